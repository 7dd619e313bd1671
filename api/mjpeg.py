"""GET /data/{sid}/mjpeg: a stream of JPEG entries as multipart/x-mixed-replace,
which a browser's <img> shows as live video (the original store's preview).

The stream's newest entry is sent first, then every newer one, at most
``max_fps`` a second (default 10, at most 30), and the newest again every
second while the stream is still. Each tick is one read of the newest entry
through the shard map: a preview costs Redis ``max_fps`` small reads a
second, whether or not the stream moved, and never more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.security import authenticated_user, runtime_of
from engine._core import RedisUnavailable, StreamKey, join_entries
from engine.ids import InvalidStreamId, split_stream_ids
from engine.redis.sharded import read_within

BOUNDARY = "ptgframe"
DEFAULT_FPS = 10.0
MOST_FPS = 30.0
# A browser shows a part once the next one starts: the newest frame is sent
# again this often while the stream is still, so the last one shows too.
REPEAT_SECONDS = 1.0


async def mjpeg(request: Request) -> Response:
    authenticated_user(request)
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    try:
        sids = split_stream_ids(raw_path.split(b"?", 1)[0].split(b"/")[2])
    except InvalidStreamId as error:
        raise HTTPException(400, f"bad stream id: {error}") from None
    if len(sids) != 1:
        raise HTTPException(400, "a preview shows one stream")
    try:
        fps = float(request.query_params.get("max_fps") or DEFAULT_FPS)
    except ValueError:
        fps = 0.0
    if not 0 < fps <= MOST_FPS:
        raise HTTPException(400, f"query parameter 'max_fps' must be above 0 and at most {MOST_FPS:g}")
    key = StreamKey(sids[0])
    runtime = runtime_of(request)
    if runtime.shards.reader_for_key(key.key) is None:
        raise RedisUnavailable("Redis is unavailable")
    budget = runtime.config.max_message_size
    return StreamingResponse(
        frames(request, key, budget, 1.0 / fps),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )


async def frames(request: Request, key: StreamKey, budget: int, interval: float) -> AsyncIterator[bytes]:
    shards = runtime_of(request).shards
    shown: tuple[int, int] | None = None
    payload = b""
    sent_at = 0.0
    loop = asyncio.get_running_loop()
    yield f"--{BOUNDARY}\r\n".encode()
    while True:
        started = loop.time()
        try:
            entries, _ = await read_within(shards, key, 1, True, None, budget, 1, at_least_one=True)
        except RedisUnavailable:
            return  # the browser shows the last frame; reloading tries again
        newest = entries[-1] if isinstance(entries, list) and entries else None
        fresh = newest is not None and newest.id_pair != shown
        if fresh or (shown is not None and started - sent_at >= REPEAT_SECONDS):
            if newest is not None and fresh:
                shown = newest.id_pair
                payload, _ = join_entries([newest])
            sent_at = started
            # Each part ends with the boundary (the body starts with one).
            yield (
                f"Content-Type: image/jpeg\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload
                + f"\r\n--{BOUNDARY}\r\n".encode()
            )
        await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
