"""Redis URLs mean what redis-py says they mean (TLS options included), and the one
backoff policy waits as documented."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from engine.redis.link import Backoff, RedisAddress, describe


def test_tcp_url_with_credentials_and_database() -> None:
    address = RedisAddress("redis://us%40er:p%3Ass@example.org:6380/3")
    assert (address.host, address.port, address.database) == ("example.org", 6380, 3)
    assert (address.username, address.password) == ("us@er", "p:ss")
    assert address.unix_path is None and address.tls is None


def test_unix_url_with_a_database_in_the_query() -> None:
    address = RedisAddress("unix:///run/redis/redis.sock?db=2")
    assert (address.unix_path, address.database) == ("/run/redis/redis.sock", 2)


def test_defaults() -> None:
    address = RedisAddress("redis://localhost")
    assert (address.host, address.port, address.database, address.password) == ("localhost", 6379, 0, None)


def test_rediss_verifies_by_default() -> None:
    tls = RedisAddress("rediss://example.org:6380").tls
    assert tls is not None
    assert tls.verify_mode == ssl.CERT_REQUIRED and tls.check_hostname


def test_rediss_keeps_its_tls_options(certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    relaxed = RedisAddress("rediss://example.org?ssl_cert_reqs=none&ssl_check_hostname=false").tls
    assert relaxed is not None
    assert relaxed.verify_mode == ssl.CERT_NONE and not relaxed.check_hostname
    trusting = RedisAddress(f"rediss://example.org?ssl_ca_certs={cert}").tls
    assert trusting is not None
    assert any("127.0.0.1" in str(ca.get("subject")) for ca in trusting.get_ca_certs())


@pytest.mark.parametrize("url", ["http://localhost", "localhost:6379", ""])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        RedisAddress(url)


def test_passwords_stay_out_of_log_lines() -> None:
    assert describe("redis://user:secret@host:1/0") == "redis://***@host:1/0"
    assert describe("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"


def test_backoff_doubles_up_to_its_most_with_jitter() -> None:
    waits = Backoff(first=0.1, most=1.0).waits()
    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    drawn = [next(waits) for _ in steps]
    for wait, step in zip(drawn, steps, strict=True):
        assert step / 2 <= wait <= step
    many = [next(Backoff(first=1.0).waits()) for _ in range(50)]
    assert len(set(many)) > 1, "two engines that lost Redis together do not retry in step"
