"""Column types shared by the models."""

import hashlib
import hmac
import json
import os
from base64 import b64decode, b64encode

import peewee
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class JSONField(peewee.TextField):
    """JSON stored as text, so that SQLite and PostgreSQL read it the same."""

    def db_value(self, value):
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    def python_value(self, value):
        if value is None:
            return None
        return json.loads(value)


class DataKeys:
    """The keys that seal personal data, by version; the newest one seals."""

    def __init__(self):
        self.keys = {}
        self.current = None
        self.index_key = None

    def configure(self, keys, index_key):
        """Install `keys`, a mapping of version to 32-byte key, and the index key."""
        for version, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"Data key version {version} must be 32 bytes.")
        self.keys = dict(keys)
        self.current = max(self.keys) if self.keys else None
        self.index_key = index_key

    def blind_index(self, value):
        """Return a keyed digest of `value` to look rows up without opening them."""
        if value is None:
            return None
        if self.index_key is None:
            raise RuntimeError("No index key is configured; set LIANBAN_DATA_KEYS.")
        return hmac.new(self.index_key, value.encode(), hashlib.sha256).hexdigest()

    def seal_bytes(self, data, associated):
        """Seal `data` with the current key; the result names the key version."""
        if self.current is None:
            raise RuntimeError("No data key is configured; set LIANBAN_DATA_KEYS.")
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, data, associated)
        return f"v{self.current}:".encode() + nonce + sealed

    def open_bytes(self, sealed, associated):
        """Open what `seal_bytes` sealed with the same associated data."""
        version, _, rest = sealed.partition(b":")
        aead = AESGCM(self.keys[int(version[1:])])
        return aead.decrypt(rest[:12], rest[12:], associated)


data_keys = DataKeys()


class SealedField(peewee.TextField):
    """Personal data sealed with AES-256-GCM, stored as `v<version>:<base64>`.

    The table and column name are the associated data, so a sealed value
    copied into another column does not open.
    """

    def _associated_data(self):
        return f"{self.model._meta.table_name}.{self.column_name}".encode()

    def db_value(self, value):
        if value is None:
            return None
        if data_keys.current is None:
            raise RuntimeError("No data key is configured; set LIANBAN_DATA_KEYS.")
        nonce = os.urandom(12)
        aead = AESGCM(data_keys.keys[data_keys.current])
        sealed = aead.encrypt(nonce, value.encode(), self._associated_data())
        return f"v{data_keys.current}:" + b64encode(nonce + sealed).decode()

    def python_value(self, value):
        if value is None:
            return None
        version, _, payload = value.partition(":")
        raw = b64decode(payload)
        aead = AESGCM(data_keys.keys[int(version[1:])])
        return aead.decrypt(raw[:12], raw[12:], self._associated_data()).decode()


class SealedJSONField(SealedField):
    """A JSON value sealed like `SealedField`."""

    def db_value(self, value):
        if value is None:
            return None
        return super().db_value(json.dumps(value, ensure_ascii=False))

    def python_value(self, value):
        if value is None:
            return None
        return json.loads(super().python_value(value))
