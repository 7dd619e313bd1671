"""Tokens, the secret file and the users file, without a server."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from engine import auth as auth_module
from engine.auth import AuthError, TokenSigner, find_token, load_or_create_secret
from engine.users import UsersFile, dev_login_ok, password_matches

SECRET = "a-test-secret-that-is-long-enough-for-hs256-and-also-for-hs512-tokens"


def test_issue_and_verify_round_trip() -> None:
    signer = TokenSigner(SECRET, 3600)
    token, expires = signer.issue("ana", 60)
    assert signer.verify(token) == "ana"
    assert expires - time.time() == pytest.approx(60, abs=2)


@pytest.mark.parametrize(
    ("claims", "key", "algorithm", "reason"),
    [
        ({"sub": "a", "exp": 9999999999}, "another-secret-that-is-long-enough-too", "HS256", "signature"),
        ({"sub": "a", "exp": 1}, SECRET, "HS256", "expired"),
        ({"sub": "a"}, SECRET, "HS256", "exp"),
        ({"exp": 9999999999}, SECRET, "HS256", "sub"),
        ({"sub": "", "exp": 9999999999}, SECRET, "HS256", "sub"),
        ({"sub": "a", "exp": 9999999999}, SECRET, "HS512", "algorithm"),
        ({"sub": "a", "exp": 9999999999}, None, "none", "algorithm"),
    ],
)
def test_verify_refuses(claims: dict[str, object], key: str | None, algorithm: str, reason: str) -> None:
    token = jwt.encode(claims, key, algorithm)
    with pytest.raises(AuthError, match=reason):
        TokenSigner(SECRET, 3600).verify(token)


def test_find_token_order_query_then_header_then_cookie() -> None:
    assert find_token({"token": "q"}, {"authorization": "Bearer h"}, {"authorization": "Bearer c"}) == "q"
    assert find_token({}, {"authorization": "Bearer h"}, {"authorization": "Bearer c"}) == "h"
    assert find_token({}, {}, {"authorization": "Bearer c"}) == "c"
    with pytest.raises(AuthError, match="no token"):
        find_token({}, {}, {})
    with pytest.raises(AuthError, match="Bearer"):
        find_token({}, {"authorization": "Basic abc"}, {})


def test_secret_is_created_once_with_0600(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert len(first) >= 40
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(tmp_path) == first


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("")
    with pytest.raises(AuthError, match="empty"):
        load_or_create_secret(tmp_path)


def test_users_file_stores_salted_hashes(tmp_path: Path) -> None:
    users = UsersFile(tmp_path)
    users.add("ana", "pw1")
    users.add("bob", "pw1")
    stored = users.path.read_text()
    assert "pw1" not in stored
    assert users.check("ana", "pw1") and users.check("bob", "pw1")
    assert not users.check("ana", "pw2") and not users.check("carl", "pw1")
    assert not password_matches("pw1", "garbage")
    with pytest.raises(ValueError):
        users.add("", "x")


def test_dev_login_needs_password_equal_to_name() -> None:
    assert dev_login_ok("test", "test")
    assert not dev_login_ok("test", "nope")
    assert not dev_login_ok("", "")


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TokenSigner(SECRET, 3600)
    token, expires = signer.issue("ana", 60)
    assert signer.verify(token) == "ana"
    assert signer.verify(token) == "ana"  # remembered
    monkeypatch.setattr(auth_module.time, "time", lambda: expires + 1.0)
    with pytest.raises(AuthError, match="expired"):
        signer.verify(token)
