"""Production users: a JSON file of salted scrypt hashes, edited by ``python -m engine adduser``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

USERS_FILE = "users.json"
# scrypt cost: ~50 ms and 16 MiB per check on this kind of machine; a login is rare.
_N, _R, _P = 2**14, 8, 1


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    encode = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


_UNKNOWN_USER_HASH = hash_password("no such user")


class UsersFile:
    """The users of a production engine, kept in ``<data_dir>/users.json`` (mode 0600)."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / USERS_FILE

    def _load(self) -> dict[str, str]:
        try:
            users = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        if not isinstance(users, dict):
            raise ValueError(f"{self.path} must hold a JSON object of user: hash")
        return users

    def add(self, name: str, password: str) -> None:
        if not name or not password:
            raise ValueError("user name and password must not be empty")
        users = self._load()
        users[name] = hash_password(password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(users, file, indent=1, sort_keys=True)
        os.replace(temporary, self.path)

    def check(self, name: str, password: str) -> bool:
        stored = self._load().get(name)
        # An unknown user costs a hash too: the answer's timing must not tell
        # which names exist.
        matches = password_matches(password, stored or _UNKNOWN_USER_HASH)
        return stored is not None and matches


def dev_login_ok(name: str, password: str) -> bool:
    """Development mode: any non-empty user whose password equals the name (test:test)."""
    return bool(name) and hmac.compare_digest(name.encode(), password.encode())
