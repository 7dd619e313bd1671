"""GET /data/{sid}: entries of one or more streams, concatenated, with their offsets."""

from __future__ import annotations

from typing import Any

from hiredis import ReplyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.params import integer, path_stream_ids
from api.security import authenticated_user, runtime_of
from engine._core import RedisUnavailable, StreamKey, join_entries
from engine.cursors import BadCursor, parse_cursors
from engine.redis.sharded import read_within
from engine.ws.pull import MAX_COUNT

# The entry-offset header stays within what common HTTP clients read in one
# header line (Python's http.client and so requests: 64 KiB). An item is
# ["sid","<ms>-<seq>",offset]: the id's JSON plus at most this much.
MAX_OFFSETS_HEADER_BYTES = 60_000
OFFSET_ITEM_OVERHEAD = 2 * 20 + 1 + 20 + 7


async def read_entries(request: Request) -> Response:
    """``last_entry_id``: ``*`` the latest ``count`` entries (oldest first); an id,
    ``0`` or ``$``: up to ``count`` entries after it (none exist after ``$``).
    The ``entry-offset`` header lists ``[sid, entry_id, start]`` per entry, in ASCII.
    A body stays within --max-response-bytes (at least one entry) and the header
    within 60 kB (about 800 entries): entries past either are left out (the
    newest kept for ``*``) and ``entry-truncated: true`` says so."""
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
        raise RedisUnavailable("Redis is unavailable")
    config = runtime_of(request).config
    budget = config.max_response_bytes
    # No entry the engine stored is above --max-message-size: a first page this
    # long cannot overshoot the budget, whatever the entries' sizes.
    first_page = max(1, budget // config.max_message_size)
    entries: list[Any] = []
    truncated = False
    header_room = MAX_OFFSETS_HEADER_BYTES
    for key, cursor in zip(keys, cursors, strict=True):
        if cursor.kind == "now":
            continue  # "$": nothing newer than now exists yet
        newest = cursor.kind == "newest"
        after = None if newest else (cursor.ms, cursor.seq)
        used = sum(entry.payload_size for entry in entries)
        # The offsets header lists every entry: it too must stay readable.
        fits = header_room // (len(key.json) + OFFSET_ITEM_OVERHEAD)
        if fits < 1:
            truncated = True
            break
        got, cut = await read_within(
            shards, key, min(count, fits), newest, after, budget - used, first_page, at_least_one=not entries
        )
        if isinstance(got, ReplyError):
            # WRONGTYPE and the like: the key is not a stream.
            raise HTTPException(400, f"Redis refused the read: {got}")
        entries.extend(got)
        header_room -= len(got) * (len(key.json) + OFFSET_ITEM_OVERHEAD)
        truncated = truncated or cut or (fits < count and len(got) == fits)
    body, offsets = join_entries(entries)
    del entries  # the body holds a copy: only one of them stays while it is sent
    headers = {"entry-offset": offsets}
    if truncated:
        headers["entry-truncated"] = "true"
    return Response(body, media_type="application/octet-stream", headers=headers)
