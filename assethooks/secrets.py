"""Encryption at rest of webhook secrets and custom header values (Fernet, keys from the environment).

Encrypted values are stored as ``enc:v1:<token>``; values without that prefix are plaintext, so a store
can be switched to encryption and re-saved gradually (``assethooks secrets encrypt``). Several keys may be
given, newest first: the first encrypts, any decrypts, which is how keys are rotated.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from assethooks.errors import ConfigError

PREFIX = "enc:v1:"


def new_key() -> str:
    """A fresh key for ``ASSETHOOKS_ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts and decrypts stored secrets; without keys it stores them as given."""

    def __init__(self, keys: str | None = None) -> None:
        parts = [part.strip() for part in (keys or "").split(",") if part.strip()]
        try:
            self._fernet = MultiFernet([Fernet(part) for part in parts]) if parts else None
        except ValueError:
            raise ConfigError(
                "ASSETHOOKS_ENCRYPTION_KEYS: not a Fernet key (make one with `assethooks secrets new-key`)"
            ) from None

    @property
    def encrypting(self) -> bool:
        """True when values are encrypted before they are stored."""
        return self._fernet is not None

    def seal(self, value: str) -> str:
        """The form of ``value`` to store."""
        if self._fernet is None:
            return value
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, stored: str) -> str:
        """The value behind a stored form."""
        if not stored.startswith(PREFIX):
            return stored
        if self._fernet is None:
            raise ConfigError("webhook secrets are encrypted in the store: set ASSETHOOKS_ENCRYPTION_KEYS")
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise ConfigError("a stored secret does not decrypt with ASSETHOOKS_ENCRYPTION_KEYS") from None
