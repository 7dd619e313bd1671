"""GET /data/{sid}/mjpeg: the newest entry first, then every newer one, each a
part of a multipart/x-mixed-replace body, bytes equal to what was stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import EngineProcess


def read_part(buffer: bytearray, stream: Iterator[bytes]) -> bytes:
    """The next part's payload from the streamed body (``buffer``: what was read
    past the last part). The body is ``--ptgframe`` and then parts that each end
    with the boundary, so that a browser shows a frame as soon as it came."""
    while b"\r\n\r\n" not in buffer:
        buffer.extend(next(stream))
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"Content-Type: image/jpeg\r\n"), head
    length = int(head.rsplit(b"Content-Length: ", 1)[1])
    buffer[:] = rest
    while len(buffer) < length + 14:
        buffer.extend(next(stream))
    payload = bytes(buffer[:length])
    assert buffer[length : length + 14] == b"\r\n--ptgframe\r\n"
    del buffer[: length + 14]
    return payload


def test_the_newest_frame_then_every_new_one(
    engine: EngineProcess, token: str, store: redis.Redis, sid: str
) -> None:
    store.xadd(sid, {"d": b"\xff\xd8old\xff\xd9"})
    store.xadd(sid, {"d": b"\xff\xd8newest\xff\xd9"})
    url = f"{engine.base_url}/data/{sid}/mjpeg?max_fps=30&token={token}"
    with httpx.stream("GET", url, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "multipart/x-mixed-replace; boundary=ptgframe"
        stream = response.iter_raw()
        buffer = bytearray()
        while len(buffer) < 12:
            buffer.extend(next(stream))
        assert buffer[:12] == b"--ptgframe\r\n"
        del buffer[:12]
        assert read_part(buffer, stream) == b"\xff\xd8newest\xff\xd9"
        frame = bytes(range(256)) * 100
        store.xadd(sid, {"d": frame})
        part = read_part(buffer, stream)
        while part == b"\xff\xd8newest\xff\xd9":  # sent again while the stream was still
            part = read_part(buffer, stream)
        assert part == frame


@pytest.mark.parametrize(
    ("query", "status"), [("max_fps=0", 400), ("max_fps=31", 400), ("max_fps=x", 400), ("", 401)]
)
def test_bad_queries_and_no_token_are_refused(
    engine: EngineProcess, token: str, query: str, status: int
) -> None:
    auth = f"&token={token}" if status != 401 else ""
    response = httpx.get(f"{engine.base_url}/data/cam/mjpeg?{query}{auth}", timeout=10)
    assert response.status_code == status
    assert "detail" in response.json()


def test_one_stream_only(engine: EngineProcess, token: str) -> None:
    response = httpx.get(f"{engine.base_url}/data/a+b/mjpeg?token={token}", timeout=10)
    assert response.status_code == 400
