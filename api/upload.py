"""POST /data/{sid}: multipart upload, one entry per file part, through the
same pipelined store path as the WebSocket push."""

from __future__ import annotations

from hiredis import ReplyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.limits import read_body
from api.multipart import MultipartError, boundary_of, split_parts
from api.params import path_stream_ids
from api.security import authenticated_user, runtime_of
from api.streams import ORJSONResponse
from engine.ids import InvalidStreamId, check_stream_id
from engine.redis.sharded import store_entries


async def post_entries(request: Request) -> Response:
    authenticated_user(request)
    runtime = runtime_of(request)
    sids = path_stream_ids(request)
    by_name = sids == ["*"] or len(sids) > 1
    try:
        boundary = boundary_of(request.headers.get("content-type", ""))
        parts = split_parts(await read_body(request, runtime.config.max_message_size), boundary)
    except MultipartError as error:
        raise HTTPException(400, str(error)) from None
    entries: list[tuple[bytes, memoryview]] = []
    for part in parts:
        if part.filename is None:
            continue  # a plain form field, not a file
        target = (part.filename or part.name) if by_name else sids[0]
        try:
            key = check_stream_id(target)
        except InvalidStreamId as error:
            raise HTTPException(400, f"bad stream id in a part's name: {error}") from None
        if len(sids) > 1 and target not in sids:
            raise HTTPException(400, f"part for stream {target!r} is not among {'+'.join(sids)}")
        entries.append((key, part.data))
    if not entries:
        raise HTTPException(400, "no file parts: every file part becomes one entry")
    maxlen_of = await runtime.maxlens.values_of({key for key, _ in entries})
    commands = [(key, b"*", payload, maxlen_of[key]) for key, payload in entries]
    try:
        ids = await store_entries(
            runtime.shards, commands, runtime.durability
        )  # RedisUnavailable: 503 (api.errors)
    except ReplyError as error:
        # e.g. WRONGTYPE: the key holds something other than a stream. Parts
        # before the refused one are stored (Redis has no rollback).
        raise HTTPException(400, f"Redis refused an entry: {error}") from None
    tally = runtime.counters.streams
    if tally is not None:
        for key, payload in entries:
            tally.record(key, 1, len(payload))
    return ORJSONResponse([entry_id.decode() for entry_id in ids])
