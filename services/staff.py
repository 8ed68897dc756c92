"""Staff accounts: organisations, passwords, login with lockout."""

import functools
import logging
import secrets
import unicodedata
from datetime import timedelta

import peewee
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from domain.identifiers import InvalidIdentifier, normalise_credit_code
from models import Organisation, Staff, Utility
from models.base import utcnow
from models.db import transaction
from services import tokens
from services.errors import Conflict, Invalid, Unauthorized

log = logging.getLogger(__name__)

ROLES = {
    "agent": "中介机构经办人",
    "service": "客服人员",
    "window": "登记窗口人员",
    "utility": "服务机构人员",
    "admin": "平台管理员",
    "supervisor": "监督人员",
}

# The organisation kind each role belongs to.
ROLE_ORGANISATIONS = {
    "agent": ("agency",),
    "service": ("service_desk", "registry_window", "utility"),
    "window": ("registry_window",),
    "utility": ("utility",),
    "admin": ("operator",),
    "supervisor": ("operator",),
}

ORGANISATION_KINDS = (
    "agency",
    "service_desk",
    "registry_window",
    "utility",
    "operator",
)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128


@functools.cache
def _hasher_for(profile):
    return PasswordHasher.from_parameters(getattr(profiles, profile))


def _hasher():
    """Return the Argon2id hasher of the PASSWORD_HASH_PROFILE setting."""
    return _hasher_for(current_app.config["PASSWORD_HASH_PROFILE"])


@functools.cache
def _unknown_user_hash(profile):
    # Verified against when the username is unknown, so that the answer takes
    # as long as for a real account and does not reveal which usernames exist.
    return _hasher_for(profile).hash(secrets.token_urlsafe(16))


LOGIN_FAILED = ("login_failed", "用户名或密码错误。")


def create_organisation(kind, name, credit_code=None, utility_code=None):
    if kind not in ORGANISATION_KINDS:
        raise Invalid(
            "organisation_kind_invalid",
            f"机构类别应为 {', '.join(ORGANISATION_KINDS)} 之一。",
        )
    utility = None
    if kind == "utility":
        utility = Utility.get_or_none(Utility.code == utility_code)
        if utility is None:
            raise Invalid(
                "utility_not_found",
                f"没有代码为 {utility_code!r} 的服务机构；"
                "服务机构人员必须属于一家服务机构。",
            )
    code = None
    if kind == "agency":
        try:
            code = normalise_credit_code(credit_code or "").value
        except InvalidIdentifier as error:
            raise Invalid(
                "agency_credit_code_invalid",
                f"中介机构须有有效的统一社会信用代码：{error}",
            ) from None
    try:
        with transaction():
            return Organisation.create(
                kind=kind, name=name, credit_code=code, utility=utility
            )
    except peewee.IntegrityError:
        raise Conflict(
            "organisation_exists", f"机构“{name}”或其信用代码已登记。"
        ) from None


def check_password_rules(password, username):
    """Raise Invalid unless `password` is long enough and not the username."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"at most {MAX_PASSWORD_LENGTH} characters")
    if username and username.lower() in password.lower():
        problems.append("must not contain the username")
    if len(set(password)) < 4:
        problems.append("must use at least 4 different characters")
    if problems:
        raise Invalid(
            "password_weak",
            f"密码须为 {MIN_PASSWORD_LENGTH} 到 {MAX_PASSWORD_LENGTH} 位，"
            "不能包含用户名，也不能只由少数几个字符组成。",
            errors={"json": {"new_password": problems}},
        )


def normalise_username(username):
    return unicodedata.normalize("NFKC", username).strip().lower()


def create_staff(username, role, organisation, display_name, password=None):
    """Create a staff account; return it with the one-time password when generated.

    A generated password must be changed at first login.
    """
    username = normalise_username(username)
    if role not in ROLES:
        raise Invalid("role_invalid", f"角色应为 {', '.join(ROLES)} 之一。")
    if organisation.kind not in ROLE_ORGANISATIONS[role]:
        raise Invalid(
            "role_organisation_mismatch",
            f"{ROLES[role]}不能属于类别为 {organisation.kind} 的机构"
            f"“{organisation.name}”。",
        )
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(12)
    check_password_rules(password, username)
    try:
        with transaction():
            staff = Staff.create(
                username=username,
                password_hash=_hasher().hash(password),
                role=role,
                organisation=organisation,
                display_name=display_name,
                must_change_password=generated,
            )
    except peewee.IntegrityError:
        raise Conflict("username_taken", f"用户名 {username} 已被使用。") from None
    log.info("staff created staff=%s role=%s org=%s", staff.id, role, organisation.id)
    return staff, password if generated else None


def login(username, password):
    """Check a username and password; return a token pair or raise Unauthorized.

    After LOGIN_MAX_FAILURES wrong passwords in a row the account is locked for
    LOGIN_LOCK_SECONDS, even against the right password.
    """
    config = current_app.config
    staff = Staff.get_or_none(Staff.username == normalise_username(username))
    if staff is None or not staff.active:
        _verify(_unknown_user_hash(config["PASSWORD_HASH_PROFILE"]), password)
        log.info("staff login failed reason=unknown_user")
        raise Unauthorized(*LOGIN_FAILED)
    now = utcnow()
    if staff.locked_until and staff.locked_until > now:
        log.warning("staff login rejected reason=locked staff=%s", staff.id)
        minutes = max(1, int((staff.locked_until - now).total_seconds() // 60) + 1)
        raise Unauthorized(
            "account_locked",
            f"密码错误次数过多，账号已锁定，请 {minutes} 分钟后再试或联系管理员解锁。",
        )
    if not _verify(staff.password_hash, password):
        _count_failure(staff, config)
        raise Unauthorized(*LOGIN_FAILED)
    with transaction():
        Staff.update(failed_logins=0, locked_until=None, last_login_at=now).where(
            Staff.id == staff.id
        ).execute()
        if _hasher().check_needs_rehash(staff.password_hash):
            Staff.update(password_hash=_hasher().hash(password)).where(
                Staff.id == staff.id
            ).execute()
        pair = tokens.issue_pair(staff)
    log.info("staff logged in staff=%s role=%s", staff.id, staff.role)
    pair["must_change_password"] = staff.must_change_password
    return pair


def _verify(password_hash, password):
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _count_failure(staff, config):
    """Count a wrong password; lock the account at the limit and return True."""
    limit = config["LOGIN_MAX_FAILURES"]
    with transaction():
        Staff.update(failed_logins=Staff.failed_logins + 1).where(
            Staff.id == staff.id
        ).execute()
        failures = Staff.get_by_id(staff.id).failed_logins
        if failures >= limit:
            until = utcnow() + timedelta(seconds=config["LOGIN_LOCK_SECONDS"])
            Staff.update(locked_until=until, failed_logins=0).where(
                Staff.id == staff.id
            ).execute()
    if failures >= limit:
        log.warning("staff account locked staff=%s failures=%d", staff.id, failures)
        return True
    log.info("staff password wrong staff=%s failures=%d", staff.id, failures)
    return False


def change_password(staff, old_password, new_password):
    """Replace the password after checking the old one; return a new token pair.

    A wrong old password counts toward the lockout as a failed login does, so
    a stolen token cannot be used to guess the password. Reaching the limit
    locks the account and ends every session.
    """
    if not _verify(staff.password_hash, old_password):
        locked = _count_failure(staff, current_app.config)
        if locked:
            with transaction():
                tokens.revoke_all(staff)
            raise Unauthorized(
                "account_locked",
                "原密码错误次数过多，账号已锁定并退出所有登录，请联系管理员解锁。",
            )
        raise Unauthorized(
            "password_wrong",
            "原密码不正确。",
            errors={"json": {"old_password": ["does not match"]}},
        )
    if old_password == new_password:
        raise Invalid(
            "password_unchanged",
            "新密码不能与原密码相同。",
            errors={"json": {"new_password": ["same as the old password"]}},
        )
    check_password_rules(new_password, staff.username)
    with transaction():
        Staff.update(
            password_hash=_hasher().hash(new_password),
            must_change_password=False,
            password_changed_at=utcnow(),
        ).where(Staff.id == staff.id).execute()
        # Other sessions started with the old password end here.
        tokens.revoke_all(staff)
        pair = tokens.issue_pair(staff)
    log.info("staff password changed staff=%s", staff.id)
    pair["must_change_password"] = False
    return pair


def set_password(staff, password):
    """Set a password chosen by an administrator; other sessions end."""
    check_password_rules(password, staff.username)
    with transaction():
        Staff.update(
            password_hash=_hasher().hash(password),
            must_change_password=False,
            password_changed_at=utcnow(),
            failed_logins=0,
            locked_until=None,
        ).where(Staff.id == staff.id).execute()
        tokens.revoke_all(staff)
    log.info("staff password set staff=%s", staff.id)


def reset_password(staff):
    """Give `staff` a new one-time password and end their sessions."""
    password = secrets.token_urlsafe(12)
    with transaction():
        Staff.update(
            password_hash=_hasher().hash(password),
            must_change_password=True,
            failed_logins=0,
            locked_until=None,
        ).where(Staff.id == staff.id).execute()
        tokens.revoke_all(staff)
    log.info("staff password reset staff=%s", staff.id)
    return password


def unlock(staff):
    with transaction():
        Staff.update(failed_logins=0, locked_until=None).where(
            Staff.id == staff.id
        ).execute()
    log.info("staff unlocked staff=%s", staff.id)


def deactivate(staff):
    with transaction():
        Staff.update(active=False).where(Staff.id == staff.id).execute()
        tokens.revoke_all(staff)
    log.info("staff deactivated staff=%s", staff.id)
