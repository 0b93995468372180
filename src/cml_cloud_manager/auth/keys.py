"""Encryption of the provider tokens an OIDC browser session keeps (refresh and ID tokens), so a copy of the
database alone does not let anyone act at the provider as a signed-in user.

Keys are Fernet keys (AES-128-CBC with HMAC-SHA256, from `cryptography`). SESSION_ENCRYPTION_KEYS lists them,
comma-separated: the first encrypts, every one decrypts, so a new key goes in front and the old one is dropped once
no session needs it (docs/deployment.md: Session encryption keys). Unset, they come from
SESSION_ENCRYPTION_KEYS_FILE, which the first API start creates holding one generated key (mode 0600).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ..config import Settings, parse_fernet_keys

log = logging.getLogger(__name__)


class KeysUnavailable(Exception):
    """No key could be read or generated; the message says what to set."""


class SessionCipher:
    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, value: str | None) -> str | None:
        return self._fernet.encrypt(value.encode()).decode() if value is not None else None

    def decrypt(self, value: str | None) -> str | None:
        """The clear value, or None when there is none or no configured key opens it (a removed key)."""
        if value is None:
            return None
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken:
            log.warning("a session's provider token opens with none of the SESSION_ENCRYPTION_KEYS")
            return None

    def rotate(self, value: str | None) -> str | None:
        """The value encrypted again with the first key, or None when no configured key opens it."""
        if value is None:
            return None
        try:
            return self._fernet.rotate(value.encode()).decode()
        except InvalidToken:
            return None


def _create(path: Path) -> None:
    """Write a new key file atomically: API replicas sharing the directory starting at once all end up with the
    one key that was linked first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode() + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
            log.warning(
                "SESSION_ENCRYPTION_KEYS is not set: generated a key in %s (mode 0600). Every API replica must "
                "use the same keys: share that file or set SESSION_ENCRYPTION_KEYS",
                path.resolve(),
            )
    finally:
        temporary.unlink()


def load_cipher(settings: Settings) -> SessionCipher:
    configured = settings.session_encryption_keys.get_secret_value()
    if configured:
        return SessionCipher(parse_fernet_keys(configured))
    path = settings.session_encryption_keys_file
    try:
        if not path.exists():
            _create(path)
        text = path.read_text()
    except OSError as exc:
        raise KeysUnavailable(
            f"SESSION_ENCRYPTION_KEYS is not set and {path} cannot be read or created ({exc.strerror}): "
            "set SESSION_ENCRYPTION_KEYS (the same on every API replica) or SESSION_ENCRYPTION_KEYS_FILE"
        ) from None
    try:
        return SessionCipher(parse_fernet_keys(text))
    except ValueError as exc:
        raise KeysUnavailable(f"{path}: {exc}") from None
