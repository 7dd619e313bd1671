"""What one HTTP request may cost the engine: GET /data bodies stay within
--max-response-bytes (fewer entries, and a header that says so); a request body
that arrives too slowly gets 408 and its socket is closed; a client that leaves
mid-body is no error; stream info renders every id Redis accepts."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import EngineProcess

ENTRY = 100_000


@pytest.fixture(scope="module")
def small_engine(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """Bodies of GET /data within 350 kB; request bodies slower than 1 s + 16 KiB/s refused."""
    args = ["--max-response-bytes", "350000", "--body-timeout", "1", "--log-level", "info"]
    engine = EngineProcess(tmp_path_factory.mktemp("limits"), redis_url, args)
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
def client(small_engine: EngineProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {small_engine.token()}"}
    with httpx.Client(base_url=small_engine.base_url, headers=headers, timeout=10) as http:
        yield http


def fill(store: redis.Redis, sid: str, n: int, size: int = ENTRY) -> list[str]:
    pipe = store.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(sid, {"d": b"%04d" % i + b"x" * (size - 4)})
    return [entry_id.decode() for entry_id in pipe.execute()]


def offsets(response: httpx.Response) -> list[list[object]]:
    items: list[list[object]] = json.loads(response.headers["entry-offset"])
    return items


def test_the_newest_entries_that_fit_are_sent_and_the_cut_is_said(
    client: httpx.Client, store: redis.Redis, sid: str
) -> None:
    ids = fill(store, sid, 10)
    response = client.get(f"/data/{sid}", params={"count": 10})
    assert response.status_code == 200
    assert response.headers["entry-truncated"] == "true"
    assert [item[1] for item in offsets(response)] == ids[-3:]  # 3 x 100 kB fit in 350 kB
    assert len(response.content) == 3 * ENTRY
    assert response.content[:4] == b"0007"


def test_entries_after_an_id_are_cut_at_the_end_and_the_rest_can_follow(
    client: httpx.Client, store: redis.Redis, sid: str
) -> None:
    ids = fill(store, sid, 10)
    got: list[str] = []
    last = "0"
    for _ in range(10):
        response = client.get(f"/data/{sid}", params={"count": 10, "last_entry_id": last})
        page = [str(item[1]) for item in offsets(response)]
        got += page
        if "entry-truncated" not in response.headers:
            break
        last = page[-1]
    assert got == ids


def test_one_entry_larger_than_the_limit_still_comes_alone(
    client: httpx.Client, store: redis.Redis, sid: str
) -> None:
    ids = fill(store, sid, 2, size=400_000)
    response = client.get(f"/data/{sid}", params={"count": 2})
    assert [item[1] for item in offsets(response)] == ids[-1:]
    assert response.headers["entry-truncated"] == "true"
    small = client.get(f"/data/{sid}", params={"count": 1})
    assert "entry-truncated" not in small.headers


def test_several_streams_share_the_limit(client: httpx.Client, store: redis.Redis, sid: str) -> None:
    first, second = fill(store, sid + "a", 2), fill(store, sid + "b", 2)
    response = client.get(f"/data/{sid}a+{sid}b", params={"count": 2, "last_entry_id": "0"})
    assert [item[1] for item in offsets(response)] == [*first, second[0]]
    assert response.headers["entry-truncated"] == "true"


def test_a_request_within_the_limit_is_not_marked(client: httpx.Client, store: redis.Redis, sid: str) -> None:
    ids = fill(store, sid, 3, size=10)
    response = client.get(f"/data/{sid}", params={"count": 5})
    assert [item[1] for item in offsets(response)] == ids
    assert "entry-truncated" not in response.headers


def slow_post(engine: EngineProcess, token: str, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", engine.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    )
    sock.sendall(head.encode() + b"--b\r\n")
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # closed with our bytes unread: the answer may be lost, the socket is not held
    return data


def test_a_body_that_trickles_in_gets_408_and_the_socket_closes(
    small_engine: EngineProcess, sid: str
) -> None:
    token = small_engine.token()
    waiting = [slow_post(small_engine, token, f"/data/{sid}") for _ in range(10)]
    trickling = [slow_post(small_engine, token, f"/data/{sid}") for _ in range(10)]
    started = time.monotonic()
    for _ in range(4):  # a byte now and then does not keep a request alive
        time.sleep(0.5)
        for sock in trickling:
            with contextlib.suppress(OSError):  # closed already
                sock.sendall(b"x")
    for sock in waiting:
        with sock:
            data = read_to_end(sock)
        assert data.startswith(b"HTTP/1.1 408 "), data[:80]
        assert b"request body too slow" in data
    for sock in trickling:
        with sock:
            read_to_end(sock)  # returns: the engine closed it
    assert time.monotonic() - started < 8


def test_a_slow_but_steady_body_is_taken(client: httpx.Client, store: redis.Redis, sid: str) -> None:
    body = (
        b"--b\r\nContent-Disposition: form-data; name=f; filename=f\r\n\r\n"
        + b"y" * 60_000
        + b"\r\n--b--\r\n"
    )

    def steady() -> Iterator[bytes]:
        for start in range(0, len(body), 20_000):
            time.sleep(0.4)  # 50 kB/s after a late start: faster than 16 KiB/s
            yield body[start : start + 20_000]

    response = client.post(
        f"/data/{sid}",
        content=steady(),
        headers={"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(len(body))},
    )
    assert response.status_code == 200, response.text
    assert store.xlen(sid) == 1


def test_a_client_leaving_mid_body_is_no_error(small_engine: EngineProcess, sid: str) -> None:
    token = small_engine.token()
    for _ in range(10):
        sock = slow_post(small_engine, token, f"/data/{sid}")
        sock.close()
    time.sleep(0.5)
    log = small_engine.log()
    assert "Traceback" not in log and "unhandled error" not in log


def test_ids_past_the_year_9999_are_shown_without_a_time(
    client: httpx.Client, store: redis.Redis, sid: str
) -> None:
    store.xadd(sid, {"d": b"micro"}, id="1795697962961000-0")  # microseconds, taken for milliseconds
    store.xadd(sid, {"d": b"end"}, id="18446744073709551615-1")
    info = client.get(f"/streams/{sid}")
    assert info.status_code == 200
    assert info.json()["last-entry"] == "18446744073709551615-1"
    assert info.json()["last-entry-time"] is None
    listing = client.get("/streams/", params={"info": "true"})
    assert listing.status_code == 200
    assert any(item["sid"] == sid for item in listing.json())


def test_the_options_are_checked(tmp_path: Path) -> None:
    from engine.config import ConfigError, resolve

    with pytest.raises(ConfigError):
        resolve({"body_timeout": "0"}, {})
    with pytest.raises(ConfigError):
        resolve({"max_response_bytes": "-1"}, {})
    assert resolve({"body_timeout": "2.5"}, {}).body_timeout == 2.5


def test_the_offsets_header_stays_readable(small_engine: EngineProcess, store: redis.Redis, sid: str) -> None:
    import urllib.request

    ids = fill(store, sid, 2000, size=4)
    url = f"{small_engine.base_url}/data/{sid}?count=2000&last_entry_id=0&token={small_engine.token()}"
    with urllib.request.urlopen(url, timeout=10) as response:  # http.client: 64 KiB per header line
        header = response.headers["entry-offset"]
        truncated = response.headers["entry-truncated"]
        body = response.read()
    items = json.loads(header)
    assert len(header) <= 60_000 and truncated == "true"
    assert [item[1] for item in items] == ids[: len(items)] and len(items) > 500
    assert len(body) == 4 * len(items)
