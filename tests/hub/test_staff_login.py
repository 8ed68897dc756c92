"""Staff log in with a password: hashing, lockout, one-time passwords, limits."""

import pytest

from models import Staff
from services import staff as staff_service
from tests.hub.conftest import STAFF_PASSWORD
from tests.hub.flows import assert_error, citizen_request


def login(client, username, password):
    return citizen_request(
        client, "POST", "/auth/login", {"username": username, "password": password}
    )


def test_login_then_me_shows_role(staffing):
    member, client = staffing.member("service")

    me = client.call("GET", "/auth/me")

    assert me["role"] == "service"
    assert me["username"] == member.username
    assert me["organisation"]["kind"] == "service_desk"
    assert me["must_change_password"] is False


def test_password_is_stored_as_argon2id(staffing):
    member, _ = staffing.member("agent", login=False)

    stored = Staff.get_by_id(member.id).password_hash

    assert stored.startswith("$argon2id$")
    assert STAFF_PASSWORD not in stored


@pytest.mark.parametrize("username_case", [str.upper, lambda name: f"  {name} "])
def test_username_is_matched_without_case_or_spaces(staffing, username_case):
    member, client = staffing.member("agent", login=False)

    response = login(client, username_case(member.username), STAFF_PASSWORD)

    assert response.status_code == 200, response.text


def test_unknown_user_looks_like_wrong_password(staffing):
    member, client = staffing.member("agent", login=False)

    unknown = login(client, "nobody-at-all", STAFF_PASSWORD)
    wrong = login(client, member.username, "Wrong-password-1")

    assert (
        assert_error(unknown, 401, "login_failed")["message"]
        == (assert_error(wrong, 401, "login_failed")["message"])
    )


def test_lockout_after_repeated_failures_refuses_the_right_password(stack, staffing):
    member, client = staffing.member("agent", login=False)
    limit = stack.app.config["LOGIN_MAX_FAILURES"]

    for _ in range(limit):
        assert_error(
            login(client, member.username, "Wrong-password-1"), 401, "login_failed"
        )
    locked = login(client, member.username, STAFF_PASSWORD)

    assert_error(locked, 401, "account_locked")
    staff_service.unlock(Staff.get_by_id(member.id))
    assert login(client, member.username, STAFF_PASSWORD).status_code == 200


def test_success_resets_the_failure_count(stack, staffing):
    member, client = staffing.member("agent", login=False)
    limit = stack.app.config["LOGIN_MAX_FAILURES"]

    for _ in range(2):
        for _ in range(limit - 1):
            login(client, member.username, "Wrong-password-1")
        assert login(client, member.username, STAFF_PASSWORD).status_code == 200

    assert Staff.get_by_id(member.id).failed_logins == 0


def test_deactivated_staff_locked_out(staffing):
    member, client = staffing.member("service")

    staff_service.deactivate(Staff.get_by_id(member.id))

    assert_error(citizen_request(client, "GET", "/auth/me"), 401, "token_invalid")
    assert_error(login(client, member.username, STAFF_PASSWORD), 401, "login_failed")


def test_one_time_password_allows_only_a_password_change(staffing):
    member, client = staffing.member("agent", login=False)
    one_time = staff_service.reset_password(Staff.get_by_id(member.id))
    pair = client.staff_login(member.username, one_time)

    assert pair["must_change_password"] is True
    assert_error(
        citizen_request(client, "GET", "/cases"),
        403,
        "password_change_required",
    )
    changed = client.call(
        "POST",
        "/auth/password",
        {"old_password": one_time, "new_password": "Brand-new-pass-7"},
    )
    assert changed["must_change_password"] is False
    assert_error(
        citizen_request(client, "GET", "/auth/me", token=pair["access_token"]),
        401,
        "token_revoked",
    )
    assert login(client, member.username, "Brand-new-pass-7").status_code == 200


@pytest.mark.parametrize(
    "new_password",
    ["short1", "aaaaaaaaaaaaaaaa", "{username}-long-enough"],
    ids=["too-short", "one-character", "contains-username"],
)
def test_weak_new_password_is_refused(staffing, new_password):
    member, client = staffing.member("agent")

    response = citizen_request(
        client,
        "POST",
        "/auth/password",
        {
            "old_password": STAFF_PASSWORD,
            "new_password": new_password.format(username=member.username),
        },
    )

    assert_error(response, 422, "password_weak")


def test_password_change_needs_the_old_password(staffing):
    _, client = staffing.member("agent")

    response = citizen_request(
        client,
        "POST",
        "/auth/password",
        {"old_password": "Not-the-password-1", "new_password": "Brand-new-pass-7"},
    )

    assert_error(response, 401, "password_wrong")


def test_citizens_cannot_use_the_password_change(client, homes):
    client.login(homes.person())

    response = citizen_request(
        client,
        "POST",
        "/auth/password",
        {"old_password": "x" * 12, "new_password": "Brand-new-pass-7"},
    )

    assert_error(response, 403, "role_forbidden")


def test_login_per_username_is_rate_limited(stack, staffing):
    member, client = staffing.member("agent", login=False)
    limit = int(stack.app.config["LOGIN_RATE_LIMIT"].split()[0])

    answers = [
        login(client, member.username, "Wrong-password-1").status_code
        for _ in range(limit + 1)
    ]

    assert answers[-1] == 429
    assert 429 not in answers[:limit]
    other, _ = staffing.member("agent", login=False)
    assert login(client, other.username, STAFF_PASSWORD).status_code == 200


def test_login_per_address_is_rate_limited(stack, client, monkeypatch):
    # The limit is read per request, so a lower one applies at once.
    monkeypatch.setitem(stack.app.config, "LOGIN_ADDRESS_RATE_LIMIT", "3 per minute")

    answers = [login(client, f"nobody{n}", "Wrong-password-1") for n in range(4)]

    assert [a.status_code for a in answers[:3]] == [401] * 3
    limited = assert_error(answers[3], 429, "too_many_requests")
    assert limited["request_id"]
    assert int(answers[3].headers["Retry-After"]) > 0


def test_password_guesses_count_toward_the_lockout(stack, staffing):
    member, client = staffing.member("agent")
    limit = stack.app.config["LOGIN_MAX_FAILURES"]
    guess = {"old_password": "Wrong-guess-123", "new_password": "Brand-new-pass-7"}

    answers = [
        citizen_request(client, "POST", "/auth/password", guess) for _ in range(limit)
    ]

    for answer in answers[:-1]:
        assert_error(answer, 401, "password_wrong")
    assert_error(answers[-1], 401, "account_locked")
    assert_error(citizen_request(client, "GET", "/auth/me"), 401, "token_revoked")
    assert_error(login(client, member.username, STAFF_PASSWORD), 401, "account_locked")


def test_password_change_is_rate_limited(stack, staffing, monkeypatch):
    monkeypatch.setitem(stack.app.config, "LOGIN_RATE_LIMIT", "2 per minute")
    monkeypatch.setitem(stack.app.config, "LOGIN_MAX_FAILURES", 100)
    _, client = staffing.member("agent")
    guess = {"old_password": "Wrong-guess-123", "new_password": "Brand-new-pass-7"}

    answers = [
        citizen_request(client, "POST", "/auth/password", guess) for _ in range(3)
    ]

    assert [a.status_code for a in answers[:2]] == [401, 401]
    assert_error(answers[2], 429, "too_many_requests")


@pytest.mark.parametrize(
    "spell",
    [
        str.upper,
        lambda name: name.upper().translate(
            {code: code + 0xFEE0 for code in range(0x21, 0x7F)}
        ),
    ],
    ids=["upper", "full-width"],
)
def test_username_spellings_share_a_budget(stack, staffing, monkeypatch, spell):
    monkeypatch.setitem(stack.app.config, "LOGIN_RATE_LIMIT", "2 per minute")
    member, client = staffing.member("agent", login=False)

    first = [login(client, member.username, "Wrong-password-1") for _ in range(2)]
    other = login(client, spell(member.username), "Wrong-password-1")

    assert [a.status_code for a in first] == [401, 401]
    assert_error(other, 429, "too_many_requests")


@pytest.mark.parametrize("kind", ["staff", "citizen"])
def test_logout_ends_the_session(client, homes, staffing, kind):
    if kind == "staff":
        _, caller = staffing.member("service")
    else:
        caller = client
        client.login(homes.person())
    pair_token = caller.token

    response = citizen_request(caller, "POST", "/auth/logout")

    assert response.status_code == 204
    assert_error(
        citizen_request(caller, "GET", "/auth/me", token=pair_token),
        401,
        "token_revoked",
    )
