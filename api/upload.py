"""POST /data/{sid}: multipart upload, one entry per file part, through the
same pipelined store path as the WebSocket push."""

from __future__ import annotations

from hiredis import ReplyError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.security import authenticated_user, runtime_of
from api.streams import ORJSONResponse
from engine._core import RedisUnavailable
from engine.ids import InvalidStreamId, check_stream_id, split_stream_ids


async def post_entries(request: Request) -> Response:
    authenticated_user(request)
    runtime = runtime_of(request)
    sids = split_stream_ids(request.path_params["sid"])
    by_name = sids == ["*"] or len(sids) > 1
    try:
        form = await request.form(max_files=100_000, max_fields=100_000)
    except Exception:
        raise HTTPException(400, "expected a multipart/form-data body") from None
    entries: list[tuple[bytes, bytes]] = []
    try:
        for field, value in form.multi_items():
            if not isinstance(value, UploadFile):
                continue
            target = (value.filename or field) if by_name else sids[0]
            key = check_stream_id(target)
            if len(sids) > 1 and target not in sids:
                raise HTTPException(400, f"part for stream {target!r} is not among {'+'.join(sids)}")
            entries.append((key, await value.read()))
    except InvalidStreamId as error:
        raise HTTPException(400, f"bad stream id in a part's name: {error}") from None
    finally:
        await form.close()
    if not entries:
        raise HTTPException(400, "no file parts: every file part becomes one entry")
    maxlens = runtime.maxlens
    missing = list({key for key, _ in entries if key not in maxlens.values})
    if missing:
        await maxlens.load(missing)
    pipe = runtime.ingest.pipe
    if pipe is None:
        raise HTTPException(503, "Redis is unavailable")
    commands = [(key, b"*", payload, maxlens.values[key]) for key, payload in entries]
    try:
        ids = await pipe.xadd_many(commands)
    except RedisUnavailable as error:
        raise HTTPException(503, str(error)) from None
    except ReplyError as error:
        raise HTTPException(500, f"Redis refused an entry: {error}") from None
    return ORJSONResponse([entry_id.decode() for entry_id in ids])
