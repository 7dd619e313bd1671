"""GET /data/{sid}: entries of one or more streams, concatenated, with their offsets."""

from __future__ import annotations

from typing import Any

from hiredis import ReplyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.params import integer, path_stream_ids
from api.security import authenticated_user, runtime_of
from engine._core import RedisUnavailable, StreamKey, join_entries, stream_read
from engine.cursors import BadCursor, parse_cursors
from engine.redis.sharded import ReadCommand, read_streams
from engine.ws.pull import MAX_COUNT


async def read_entries(request: Request) -> Response:
    """``last_entry_id``: ``*`` the latest ``count`` entries (oldest first); an id,
    ``0`` or ``$``: up to ``count`` entries after it (none exist after ``$``).
    The ``entry-offset`` header lists ``[sid, entry_id, start]`` per entry, in ASCII."""
    authenticated_user(request)
    sids = path_stream_ids(request)
    count = integer(request.query_params, "count", 1, minimum=1)
    if count > MAX_COUNT:
        raise HTTPException(400, f"query parameter 'count' must be at most {MAX_COUNT}")
    try:
        cursors = parse_cursors(request.query_params.get("last_entry_id") or "*", len(sids))
    except BadCursor as error:
        raise HTTPException(400, str(error)) from None
    shards = runtime_of(request).shards
    keys = [StreamKey(sid) for sid in sids]
    if not all(shards.reader_for_key(key.key) is not None for key in keys):
        # Even a query that reads nothing ("$") reports the outage the same way.
        raise HTTPException(503, "Redis is unavailable")
    commands: list[ReadCommand] = []
    newest_first: list[bool] = []
    for key, cursor in zip(keys, cursors, strict=True):
        if cursor.kind == "now":
            continue  # "$": nothing newer than now exists yet
        newest = cursor.kind == "newest"
        after = None if newest else (cursor.ms, cursor.seq)
        commands.append((key, stream_read(key, count, newest, after)))
        newest_first.append(newest)
    try:
        replies = await read_streams(shards, commands)
    except RedisUnavailable:
        raise HTTPException(503, "Redis is unavailable") from None
    entries: list[Any] = []
    for reply, reverse in zip(replies, newest_first, strict=True):
        if isinstance(reply, ReplyError):
            # WRONGTYPE and the like: the key is not a stream.
            raise HTTPException(400, f"Redis refused the read: {reply}")
        if reverse:
            reply.reverse()
        entries.extend(reply)
    body, offsets = join_entries(entries)
    return Response(body, media_type="application/octet-stream", headers={"entry-offset": offsets})
