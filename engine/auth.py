"""Tokens (JWT HS256), the signing secret and where a request carries its token."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

import jwt

ALGORITHM = "HS256"
VERIFIED_TOKENS_KEPT = 4096
SECRET_FILE = "secret"


class AuthError(Exception):
    """A missing, malformed, forged or expired token; str() says which, for the 401 body."""


def load_or_create_secret(data_dir: Path) -> str:
    """Read ``<data_dir>/secret``, creating it (0600) with 256 random bits the first time."""
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if not secret:
            raise AuthError(f"{path} is empty; delete it to generate a new secret") from None
        return secret
    with os.fdopen(fd, "w") as file:
        secret = secrets.token_urlsafe(32)
        file.write(secret + "\n")
    return secret


class TokenSigner:
    """Issues and strictly verifies the engine's tokens."""

    def __init__(self, secret: str, lifetime: int):
        if not secret:
            raise ValueError("the token secret must not be empty")
        self._key = secret.encode()
        self.lifetime = lifetime
        # token -> (user, expiry): a token's signature is checked once, its
        # expiry on every use (JWT decoding was 11% of POST /data).
        self._verified: dict[str, tuple[str, int]] = {}

    def issue(self, user: str, seconds: int | None = None) -> tuple[str, int]:
        """A token for ``user`` valid ``seconds`` (at most the configured lifetime unless
        called from the CLI with an explicit lifetime); returns (token, expiry unix time)."""
        seconds = self.lifetime if seconds is None else seconds
        expires = int(time.time()) + max(1, seconds)
        token = jwt.encode({"sub": user, "exp": expires}, self._key, algorithm=ALGORITHM)
        return token, expires

    def verify(self, token: str) -> str:
        """The user named by a valid token; AuthError for anything else."""
        known = self._verified.get(token)
        if known is not None:
            if known[1] > time.time():
                return known[0]
            del self._verified[token]
            raise AuthError("token expired")
        if not token.isascii():
            # A JWT is base64url text; other bytes (as a header may carry) are no token.
            raise AuthError("invalid token: not ASCII")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(f"token algorithm must be {ALGORITHM}") from None
        except jwt.InvalidTokenError as error:
            raise AuthError(f"invalid token: {error}") from None
        user = claims["sub"]
        if not isinstance(user, str) or not user:
            raise AuthError("invalid token: 'sub' must be a non-empty string")
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified)))  # the oldest
        self._verified[token] = (user, int(claims["exp"]))
        return user


def find_token(query: Mapping[str, str], headers: Mapping[str, str], cookies: Mapping[str, str]) -> str:
    """The token of a request: ``token`` query parameter, else ``Authorization: Bearer``,
    else the ``authorization`` cookie (first match wins). Header names are lower-case."""
    token = query.get("token")
    if token:
        return token
    for value in (headers.get("authorization"), cookies.get("authorization")):
        if value:
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise AuthError("authorization must be 'Bearer <token>'")
            return credentials.strip()
    raise AuthError("not authenticated: no token in query, header or cookie")
