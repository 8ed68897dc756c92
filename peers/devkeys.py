"""Development secrets shared by the hub and its partner peers.

`ensure_dev_keys` creates the files in one directory on the first call and
reuses them afterwards, so the hub and every peer started with the same
directory agree on the shared secrets and key pairs:

    partners.json                 utility HMAC secrets, identity provider appid/secret
    wechatpay/wechatpay.json      mchid, appid, certificate serials, APIv3 key
    wechatpay/merchant_*.pem      the merchant's RSA key pair
    wechatpay/platform_*.pem      the WeChat Pay platform's RSA key pair
    alipay/alipay.json            Alipay app_id and seller_id
    alipay/app_*.pem              the app's RSA key pair
    alipay/alipay_*.pem           the Alipay platform's RSA key pair

Files that contain secrets are written with mode 0600. These keys are for
development and tests only.

`python -m peers.devkeys DIR` creates the directory and prints the file paths.
"""

import argparse
import fcntl
import json
import logging
import os
import secrets
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from peers.common import UTILITIES

logger = logging.getLogger(__name__)

MCHID = "1900000001"
RSA_KEY_BITS = 2048
WECHATPAY_FIELDS = ("mchid", "appid", "merchant_serial", "platform_serial", "apiv3_key")
ALIPAY_FIELDS = ("app_id", "seller_id")


@dataclass(frozen=True)
class DevKeys:
    """Paths and loaded values of one development key directory."""

    directory: Path
    partners_path: Path
    # Utility code to HMAC secret, one entry per code in peers.common.UTILITIES.
    utility_secrets: dict[str, str] = field(repr=False)
    idp_appid: str
    idp_secret: str = field(repr=False)
    wechatpay_dir: Path
    wechatpay_config_path: Path
    mchid: str
    wechatpay_appid: str
    merchant_serial: str
    platform_serial: str
    apiv3_key: str = field(repr=False)
    merchant_private_key_path: Path
    merchant_public_key_path: Path
    platform_private_key_path: Path
    platform_public_key_path: Path
    # The Alipay fields have defaults so that code which builds DevKeys
    # without them keeps working. ensure_dev_keys always sets them.
    alipay_dir: Path | None = None
    alipay_config_path: Path | None = None
    alipay_app_id: str = ""
    alipay_seller_id: str = ""
    alipay_app_private_key_path: Path | None = None
    alipay_app_public_key_path: Path | None = None
    alipay_private_key_path: Path | None = None
    alipay_public_key_path: Path | None = None

    def utility_secret(self, code: str) -> str:
        try:
            return self.utility_secrets[code]
        except KeyError:
            raise KeyError(
                f"No secret for utility {code!r} in {self.partners_path}; "
                f"known codes: {', '.join(sorted(self.utility_secrets))}."
            ) from None


def ensure_dev_keys(directory: Path) -> DevKeys:
    """Create the missing development keys in `directory` and return all of them.

    Existing files are kept. A utility code missing from partners.json gets a
    new secret. A missing public key file is derived from its private key. An
    exclusive lock on `directory/.lock` keeps two processes that start at once
    from writing different secrets.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    wechatpay_dir = directory / "wechatpay"
    wechatpay_dir.mkdir(mode=0o700, exist_ok=True)
    alipay_dir = directory / "alipay"
    alipay_dir.mkdir(mode=0o700, exist_ok=True)

    with _exclusive_lock(directory / ".lock"):
        partners = _ensure_partners(directory / "partners.json")
        appid = partners["idp"]["appid"]
        for name in ("merchant", "platform"):
            _ensure_key_pair(
                wechatpay_dir / f"{name}_private.pem",
                wechatpay_dir / f"{name}_public.pem",
            )
        wechatpay = _ensure_wechatpay_config(wechatpay_dir / "wechatpay.json", appid)
        for name in ("app", "alipay"):
            _ensure_key_pair(
                alipay_dir / f"{name}_private.pem", alipay_dir / f"{name}_public.pem"
            )
        alipay = _ensure_alipay_config(alipay_dir / "alipay.json")

    return DevKeys(
        directory=directory,
        partners_path=directory / "partners.json",
        utility_secrets={
            code: entry["secret"] for code, entry in partners["utilities"].items()
        },
        idp_appid=appid,
        idp_secret=partners["idp"]["secret"],
        wechatpay_dir=wechatpay_dir,
        wechatpay_config_path=wechatpay_dir / "wechatpay.json",
        mchid=wechatpay["mchid"],
        wechatpay_appid=wechatpay["appid"],
        merchant_serial=wechatpay["merchant_serial"],
        platform_serial=wechatpay["platform_serial"],
        apiv3_key=wechatpay["apiv3_key"],
        merchant_private_key_path=wechatpay_dir / "merchant_private.pem",
        merchant_public_key_path=wechatpay_dir / "merchant_public.pem",
        platform_private_key_path=wechatpay_dir / "platform_private.pem",
        platform_public_key_path=wechatpay_dir / "platform_public.pem",
        alipay_dir=alipay_dir,
        alipay_config_path=alipay_dir / "alipay.json",
        alipay_app_id=alipay["app_id"],
        alipay_seller_id=alipay["seller_id"],
        alipay_app_private_key_path=alipay_dir / "app_private.pem",
        alipay_app_public_key_path=alipay_dir / "app_public.pem",
        alipay_private_key_path=alipay_dir / "alipay_private.pem",
        alipay_public_key_path=alipay_dir / "alipay_public.pem",
    )


@contextmanager
def _exclusive_lock(path: Path):
    with open(path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` through a temporary file created with `mode`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as output:
        output.write(data)
    # os.open applies the umask, so set the mode again explicitly.
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); delete it to create new keys."
        ) from None
    if not isinstance(content, dict):
        raise ValueError(f"{path} must contain a JSON object; delete it to recreate.")
    return content


def _write_json(path: Path, content: dict) -> None:
    text = json.dumps(content, ensure_ascii=False, indent=2) + "\n"
    _write_file(path, text.encode("utf-8"), 0o600)


def _ensure_partners(path: Path) -> dict:
    partners = _read_json(path) if path.exists() else {}
    changed = not path.exists()

    utilities = partners.setdefault("utilities", {})
    for utility in UTILITIES:
        entry = utilities.get(utility.code)
        if not isinstance(entry, dict) or not entry.get("secret"):
            utilities[utility.code] = {"secret": secrets.token_hex(32)}
            changed = True

    idp = partners.get("idp")
    if not isinstance(idp, dict) or not idp.get("appid") or not idp.get("secret"):
        partners["idp"] = {
            "appid": "wx" + secrets.token_hex(8),
            "secret": secrets.token_hex(16),
        }
        changed = True

    if changed:
        _write_json(path, partners)
        logger.info("wrote development partner secrets to %s", path)
    return partners


def _ensure_key_pair(private_path: Path, public_path: Path) -> None:
    if private_path.exists():
        if public_path.exists():
            return
        private_key = serialization.load_pem_private_key(
            private_path.read_bytes(), password=None
        )
    else:
        private_key = rsa.generate_private_key(
            public_exponent=65537, key_size=RSA_KEY_BITS
        )
        private_pem = private_key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        )
        _write_file(private_path, private_pem, 0o600)
        logger.info("wrote RSA private key %s", private_path)

    public_pem = private_key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    _write_file(public_path, public_pem, 0o644)
    logger.info("wrote RSA public key %s", public_path)


def _ensure_wechatpay_config(path: Path, appid: str) -> dict:
    if path.exists():
        config = _read_json(path)
        missing = [name for name in WECHATPAY_FIELDS if not config.get(name)]
        if missing:
            raise ValueError(
                f"{path} lacks {', '.join(missing)}; delete it to create a new one."
            )
        return config

    config = {
        "mchid": MCHID,
        "appid": appid,
        "merchant_serial": secrets.token_hex(20).upper(),
        "platform_serial": secrets.token_hex(20).upper(),
        # token_hex(16) gives the 32 ASCII characters that an APIv3 key has.
        "apiv3_key": secrets.token_hex(16),
    }
    _write_json(path, config)
    logger.info("wrote WeChat Pay sandbox settings to %s", path)
    return config


def _ensure_alipay_config(path: Path) -> dict:
    if path.exists():
        config = _read_json(path)
        missing = [name for name in ALIPAY_FIELDS if not config.get(name)]
        if missing:
            raise ValueError(
                f"{path} lacks {', '.join(missing)}; delete it to create a new one."
            )
        return config

    config = {
        # App ids are 16 digits, like 2014072300007148 in Alipay's examples,
        # and seller ids (Alipay user ids) are 2088 followed by 12 digits.
        "app_id": "2021" + _random_digits(12),
        "seller_id": "2088" + _random_digits(12),
    }
    _write_json(path, config)
    logger.info("wrote Alipay sandbox settings to %s", path)
    return config


def _random_digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m peers.devkeys",
        description="Create (or reuse) the development keys of the partner peers.",
    )
    parser.add_argument("directory", type=Path, help="Key directory to create or use.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    keys = ensure_dev_keys(args.directory)
    # This is the command's intended output. It lists paths, never secret values.
    print(f"partner secrets:     {keys.partners_path}")
    print(f"wechatpay settings:  {keys.wechatpay_config_path}")
    print(f"merchant key pair:   {keys.merchant_private_key_path}")
    print(f"platform key pair:   {keys.platform_private_key_path}")
    print(f"alipay settings:     {keys.alipay_config_path}")
    print(f"alipay app key pair: {keys.alipay_app_private_key_path}")
    print(f"alipay key pair:     {keys.alipay_private_key_path}")
    print(f"mini-program appid:  {keys.idp_appid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
