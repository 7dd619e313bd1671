"""GET /data/{sid} end to end through a real engine and Redis: every form of
last_entry_id, several streams, the entry-offset header, and the 400s."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import httpx
import pytest
import redis


def new_sid(prefix: str = "get") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fill(store: redis.Redis, sid: str, n: int) -> list[str]:
    return [store.xadd(sid, {"d": f"{sid}:{i}".encode()}).decode() for i in range(n)]


def read(http: httpx.Client, path: str, **params: str | int) -> tuple[list[list[object]], bytes]:
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header = response.headers["entry-offset"]
    assert header.isascii()
    return json.loads(header), response.content


def entries(offsets: list[list[object]], body: bytes) -> list[tuple[object, object, bytes]]:
    """(sid, entry_id, payload) per entry, as ptgctl unpacks them (start offsets)."""
    starts = [int(str(item[2])) for item in offsets]
    ends = [*starts[1:], len(body)] if starts else []
    return [(item[0], item[1], body[a:b]) for item, a, b in zip(offsets, starts, ends, strict=True)]


def test_star_is_the_latest_count_entries_oldest_first(http: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid()
    ids = fill(store, sid, 5)
    offsets, body = read(http, f"/data/{sid}")
    assert entries(offsets, body) == [(sid, ids[4], f"{sid}:4".encode())]
    offsets, body = read(http, f"/data/{sid}", count=3, last_entry_id="*")
    assert entries(offsets, body) == [(sid, ids[i], f"{sid}:{i}".encode()) for i in (2, 3, 4)]
    offsets, body = read(http, f"/data/{sid}", count=50, last_entry_id="*")
    assert [e[1] for e in entries(offsets, body)] == ids


def test_an_id_reads_the_entries_after_it(http: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid()
    ids = fill(store, sid, 6)
    offsets, body = read(http, f"/data/{sid}", last_entry_id=ids[1], count=3)
    assert entries(offsets, body) == [(sid, ids[i], f"{sid}:{i}".encode()) for i in (2, 3, 4)]
    offsets, _ = read(http, f"/data/{sid}", last_entry_id=ids[5], count=3)
    assert offsets == []
    # an id with only milliseconds means <ms>-0
    ms = ids[3].split("-")[0]
    offsets, _ = read(http, f"/data/{sid}", last_entry_id=ms, count=10)
    assert [e[1] for e in offsets] == [i for i in ids if i > f"{ms}-0"]


def test_zero_reads_from_the_start(http: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid()
    ids = fill(store, sid, 4)
    offsets, body = read(http, f"/data/{sid}", last_entry_id="0", count=2)
    assert entries(offsets, body) == [(sid, ids[0], f"{sid}:0".encode()), (sid, ids[1], f"{sid}:1".encode())]


def test_dollar_is_empty(http: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid()
    fill(store, sid, 3)
    offsets, body = read(http, f"/data/{sid}", last_entry_id="$", count=5)
    assert (offsets, body) == ([], b"")


def test_a_missing_stream_is_empty(http: httpx.Client) -> None:
    assert read(http, f"/data/{new_sid()}") == ([], b"")


def test_several_streams_with_one_id_for_all(http: httpx.Client, store: redis.Redis) -> None:
    a, b = new_sid("a"), new_sid("b")
    ids_a, ids_b = fill(store, a, 3), fill(store, b, 2)
    offsets, body = read(http, f"/data/{a}+{b}", count=2)
    assert entries(offsets, body) == [
        (a, ids_a[1], f"{a}:1".encode()),
        (a, ids_a[2], f"{a}:2".encode()),
        (b, ids_b[0], f"{b}:0".encode()),
        (b, ids_b[1], f"{b}:1".encode()),
    ]


@pytest.mark.parametrize("separator", ["%2B", "+"])  # encoded, or a literal '+' (read as ' ')
def test_several_streams_with_one_id_each(http: httpx.Client, store: redis.Redis, separator: str) -> None:
    a, b, c = new_sid("a"), new_sid("b"), new_sid("c")
    ids_a, ids_b, _ = fill(store, a, 3), fill(store, b, 3), fill(store, c, 2)
    cursor = separator.join([ids_a[0], "*", "$"])
    response = http.get(f"/data/{a}+{b}+{c}?count=5&last_entry_id={cursor}")
    assert response.status_code == 200, response.text
    offsets = json.loads(response.headers["entry-offset"])
    got = entries(offsets, response.content)
    assert [(e[0], e[1]) for e in got] == [(a, ids_a[1]), (a, ids_a[2])] + [(b, i) for i in ids_b]


def test_offsets_of_a_non_ascii_stream_id_are_ascii(http: httpx.Client, store: redis.Redis) -> None:
    sid = f"caméra-{uuid.uuid4().hex[:6]}-视频"
    ids = [store.xadd(sid, {"d": payload}).decode() for payload in (b"", b"\x00\xff", b"third")]
    response = http.get(f"/data/{quote(sid)}", params={"count": 3})
    assert response.status_code == 200
    raw = response.headers.raw  # exactly as sent
    header = next(value for name, value in raw if name.lower() == b"entry-offset")
    assert header.isascii() and b"\\u" in header
    offsets = json.loads(header)
    assert offsets == [[sid, ids[0], 0], [sid, ids[1], 0], [sid, ids[2], 2]]
    assert response.content == b"\x00\xffthird"


def test_entries_without_a_d_field_are_empty(http: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid()
    first = store.xadd(sid, {"other": b"x"}).decode()
    second = store.xadd(sid, {"x": b"1", "d": b"payload", "y": b"2"}).decode()
    offsets, body = read(http, f"/data/{sid}", count=2)
    assert entries(offsets, body) == [(sid, first, b""), (sid, second, b"payload")]


def test_large_entries(http: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid()
    payloads = [bytes([i]) * (300_000 + i) for i in range(3)]
    for payload in payloads:
        store.xadd(sid, {"d": payload})
    offsets, body = read(http, f"/data/{sid}", count=3)
    assert [e[2] for e in entries(offsets, body)] == payloads


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("last_entry_id=abc", "not '*', '$', '0' or an entry id"),
        ("last_entry_id=1-2-3", "entry id"),
        ("last_entry_id=-", "entry id"),
        ("last_entry_id=99999999999999999999999", "out of range"),
        ("last_entry_id=0%2B0%2B0", "3 ids for 2 streams"),
        ("count=0", "at least 1"),
        ("count=x", "integer"),
        ("count=10001", "at most 10000"),
    ],
)
def test_bad_queries_are_400(http: httpx.Client, query: str, detail: str) -> None:
    response = http.get(f"/data/a+b?{query}")
    assert response.status_code == 400
    assert detail in response.json()["detail"]


@pytest.mark.parametrize("segment", ["XMETA:cam", "a%20b", "a+a", "%2Fx"])
def test_bad_stream_ids_are_400(http: httpx.Client, segment: str) -> None:
    response = http.get(f"/data/{segment}")
    assert response.status_code == 400
    assert "stream id" in response.json()["detail"]


def test_a_key_that_is_not_a_stream_is_400(http: httpx.Client, store: redis.Redis) -> None:
    sid = new_sid()
    store.set(sid, b"plain string")
    response = http.get(f"/data/{sid}")
    assert response.status_code == 400
    assert "WRONGTYPE" in response.json()["detail"]


def test_no_token_is_401(anon: httpx.Client) -> None:
    response = anon.get("/data/cam")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_openapi_describes_get_data(anon: httpx.Client) -> None:
    operation = anon.get("/openapi.json").json()["paths"]["/data/{sid}"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"sid", "count", "last_entry_id"}
    assert "entry-offset" in operation["responses"]["200"]["headers"]
