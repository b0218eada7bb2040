"""Secrets at rest: host credentials are stored encrypted with keys from VIRTFLEET_SECRETS_KEY.

MultiFernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``): the first key encrypts, every key
decrypts, so rotating is "put the new key first, keep the old one after it, run
``manage.py rotate_secrets``". The keys come from the environment (settings), never from the
database they protect, and are independent of SECRET_KEY.

Packages for encrypted model fields were considered; the well-kept one derives its key from
SECRET_KEY and silently hands back the ciphertext when a key is wrong, which would send garbage to
libvirt as a password. A wrong key must fail loudly, saying which setting to fix.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class SecretsKeyMismatch(ImproperlyConfigured):
    """A stored secret cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.VIRTFLEET_SECRETS_KEYS))


def encrypt(value: str) -> str:
    """``value`` encrypted with the current key ("" stays "": nothing to hide)."""
    if not value:
        return ""
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str, *, what: str = "a stored secret") -> str:
    if not token:
        return ""
    try:
        return fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretsKeyMismatch(
            f"{what} cannot be decrypted with VIRTFLEET_SECRETS_KEY: the key is not the one it was stored "
            "with. Set the key it was stored with (to rotate, list the new key first and the old key after it, "
            "comma-separated)."
        ) from None


def rotate(token: str) -> str:
    """``token`` re-encrypted with the current (first) key."""
    return fernet().rotate(token.encode()).decode() if token else ""


class EncryptedTextField(models.TextField):
    """A text column holding a secret: encrypted on the way in, decrypted on the way out.

    Lookups on it make no sense (each encryption differs) and none are made.
    """

    description = "Text encrypted at rest with VIRTFLEET_SECRETS_KEY"

    def from_db_value(self, value, expression, connection):
        if value is None:
            return value
        return decrypt(value, what=f"{self.model.__name__}.{self.name}")

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value is None else encrypt(value)
