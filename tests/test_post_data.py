"""POST /data/{sid}: multipart parts in, the same bytes in Redis, ids back."""

from __future__ import annotations

import os

import httpx
import pytest
import redis

from tests.conftest import stored


def test_every_file_part_is_an_entry_whatever_its_field_name(
    http: httpx.Client, store: redis.Redis, sid: str
) -> None:
    payloads = [b"", b"one", os.urandom(200_000)]
    files = [("entries", ("a", payloads[0])), (sid, ("b", payloads[1])), ("x", ("c", payloads[2]))]
    response = http.post(f"/data/{sid}", files=files, data={"note": "fields that are not files are ignored"})
    assert response.status_code == 200, response.text
    got = stored(store, sid)
    assert [data for _, data in got] == payloads
    assert response.json() == [entry_id for entry_id, _ in got]


def test_star_routes_each_part_by_filename_else_field_name(
    http: httpx.Client, store: redis.Redis, sid: str
) -> None:
    files = [("ignored", (f"{sid}-a", b"1")), ("other", (f"{sid}-b", b"2")), ("more", (f"{sid}-a", b"3"))]
    response = http.post("/data/*", files=files)
    assert response.status_code == 200, response.text
    assert [d for _, d in stored(store, f"{sid}-a")] == [b"1", b"3"]
    assert [d for _, d in stored(store, f"{sid}-b")] == [b"2"]


def test_listed_streams_take_parts_named_after_them(http: httpx.Client, store: redis.Redis, sid: str) -> None:
    response = http.post(
        f"/data/{sid}-x+{sid}-y", files=[("p", (f"{sid}-y", b"why")), ("q", (f"{sid}-x", b"ex"))]
    )
    assert response.status_code == 200, response.text
    assert [d for _, d in stored(store, f"{sid}-x")] == [b"ex"]
    assert [d for _, d in stored(store, f"{sid}-y")] == [b"why"]
    response = http.post(f"/data/{sid}-x+{sid}-y", files=[("p", ("elsewhere", b"no"))])
    assert response.status_code == 400
    assert "not among" in response.json()["detail"]


@pytest.mark.parametrize(
    ("segment", "files", "reason"),
    [
        ("{sid}", [("field", (None, b"plain form field"))], "no file parts"),
        ("*", [("p", ("XMETA:x", b"no"))], "bad stream id"),
        ("*", [("p", ("a b", b"no"))], "bad stream id"),
        ("XMETA:{sid}", [("p", ("f", b"no"))], "bad stream id"),
        ("{sid}%FF", [("p", ("f", b"no"))], "UTF-8"),
    ],
)
def test_bad_uploads_are_400_and_store_nothing(
    http: httpx.Client,
    store: redis.Redis,
    sid: str,
    segment: str,
    files: list[tuple[str, tuple[str, bytes]]],
    reason: str,
) -> None:
    response = http.post(f"/data/{segment.format(sid=sid)}", files=files)
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert store.xlen(sid) == 0


def test_not_multipart_is_400(http: httpx.Client, sid: str) -> None:
    response = http.post(f"/data/{sid}", content=b"raw", headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["detail"]


def test_a_truncated_body_is_400_and_stores_nothing(http: httpx.Client, store: redis.Redis, sid: str) -> None:
    request = http.build_request("POST", f"/data/{sid}", files=[("p", ("f", b"0123456789"))])
    body = request.read()
    response = http.post(
        f"/data/{sid}", content=body[:-20], headers={"Content-Type": request.headers["content-type"]}
    )
    assert response.status_code == 400
    assert "not terminated" in response.json()["detail"]
    assert store.xlen(sid) == 0


def test_a_body_above_the_message_size_limit_is_413(redis_url: str, tmp_path, sid: str) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import EngineProcess

    engine = EngineProcess(tmp_path, redis_url, ["--max-message-size", "1000"]).start()
    try:
        response = httpx.post(
            f"{engine.base_url}/data/{sid}",
            params={"token": engine.token()},
            files=[("p", ("f", b"x" * 2000))],
        )
    finally:
        engine.stop()
    assert response.status_code == 413


def test_post_needs_a_token(anon: httpx.Client, sid: str) -> None:
    assert anon.post(f"/data/{sid}", files=[("p", ("f", b"x"))]).status_code == 401


def test_max_len_applies_to_posted_entries(http: httpx.Client, store: redis.Redis, sid: str) -> None:
    http.put(f"/streams/{sid}", json={"max_len": 10}).raise_for_status()
    for _ in range(6):
        http.post(f"/data/{sid}", files=[("p", ("f", b"e" * 10))] * 100).raise_for_status()
    assert 10 <= store.xlen(sid) <= 200
