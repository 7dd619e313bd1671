"""RFC 6455 held strictly at the engine's sockets: reserved bits, close codes and
close payloads no peer may send are protocol errors (1002) and nothing after them
is stored; only version 13 upgrades; header bytes that are no token are a 401,
never a 500 with Python's words in it."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.conftest import EngineProcess
from tests.wsraw import FIN, RSV1, RSV2, RSV3, handshake, masked_frame, read_until_close

CLOSE, TEXT, BINARY = 0x8, 0x1, 0x2


def push_socket(engine: EngineProcess, token: str, sid: str) -> tuple[socket.socket, bytes]:
    status, _, rest, sock = handshake(engine.port, f"/data/{sid}/push?ack=true&token={token}")
    assert status == 101
    return sock, rest


def pull_socket(engine: EngineProcess, token: str, sid: str) -> tuple[socket.socket, bytes]:
    status, _, rest, sock = handshake(engine.port, f"/data/{sid}/pull?token={token}")
    assert status == 101
    return sock, rest


def entries(store: redis.Redis, sid: str) -> list[bytes]:
    return [fields[b"d"] for _, fields in store.xrange(sid)]


def settle(store: redis.Redis, sid: str, count: int) -> None:
    for _ in range(50):
        if store.xlen(sid) >= count:
            return
        time.sleep(0.02)


@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3], ids=["rsv1", "rsv2", "rsv3"])
def test_reserved_bits_close_a_push_socket_and_nothing_after_is_stored(
    engine: EngineProcess, token: str, store: redis.Redis, sid: str, rsv: int
) -> None:
    sock, rest = push_socket(engine, token, sid)
    with sock:
        sock.sendall(
            masked_frame(BINARY, b"before")
            + masked_frame(BINARY, b"reserved", FIN | rsv)
            + masked_frame(BINARY, b"after")
        )
        acks, code, reason = read_until_close(sock, rest)
    settle(store, sid, 1)
    assert code == 1002 and "reserved bits" in reason
    assert entries(store, sid) == [b"before"] and len(acks) == 1


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_close_codes_no_peer_may_send_are_answered_1002(
    engine: EngineProcess, token: str, sid: str, code: int
) -> None:
    for opened in (push_socket, pull_socket):
        sock, rest = opened(engine, token, sid)
        with sock:
            sock.sendall(masked_frame(CLOSE, code.to_bytes(2, "big") + b"bye"))
            _, answer, _ = read_until_close(sock, rest)
        assert answer == 1002, opened.__name__


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1008, 1011, 1014, 3000, 4999])
def test_valid_close_codes_are_echoed(engine: EngineProcess, token: str, sid: str, code: int) -> None:
    for opened in (push_socket, pull_socket):
        sock, rest = opened(engine, token, sid)
        with sock:
            sock.sendall(masked_frame(CLOSE, code.to_bytes(2, "big")))
            _, answer, _ = read_until_close(sock, rest)
        assert answer == code, opened.__name__


def test_a_one_byte_close_payload_ends_the_socket_and_what_follows_is_not_stored(
    engine: EngineProcess, token: str, store: redis.Redis, sid: str
) -> None:
    sock, rest = push_socket(engine, token, sid)
    with sock:
        sock.sendall(masked_frame(BINARY, b"before"))
        time.sleep(0.2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(masked_frame(CLOSE, b"\x03"))
        time.sleep(0.002)  # a read of its own, before picows hangs up (10 ms later)
        sock.sendall(masked_frame(BINARY, b"after the close"))
        _, code, _ = read_until_close(sock, rest)
    time.sleep(0.3)
    assert code == 1002
    assert entries(store, sid) == [b"before"]


def test_reserved_bits_close_a_pull_socket(engine: EngineProcess, token: str, sid: str) -> None:
    sock, rest = pull_socket(engine, token, sid)
    with sock:
        sock.sendall(masked_frame(TEXT, b"ack", FIN | RSV1))
        _, code, _ = read_until_close(sock, rest)
    assert code == 1002


@pytest.mark.parametrize("version", ["8", "7", "12", ""])
def test_only_version_13_upgrades(engine: EngineProcess, token: str, sid: str, version: str) -> None:
    status, headers, _, sock = handshake(engine.port, f"/data/{sid}/push?token={token}", version=version)
    sock.close()
    assert status == 426
    assert headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe",
        b"Authorization: Bearer caf\xc3\xa9",
        b"Cookie: authorization=Bearer \xe9t\xe9",
        b'Cookie: authorization="Bearer \xc3\xa9"',
    ],
)
def test_header_bytes_that_are_no_token_are_401_not_500(
    engine: EngineProcess, sid: str, header: bytes
) -> None:
    for endpoint in ("push", "pull"):
        status, headers, body, sock = handshake(engine.port, f"/data/{sid}/{endpoint}", raw_header=header)
        sock.close()
        assert status == 401, body
        assert headers["content-type"] == "application/json"
        assert b"codec" not in body and b"Traceback" not in body
