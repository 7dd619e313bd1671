"""/ping and /streams: health and stream metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.limits import METADATA_LIMIT, read_body
from api.params import flag, path_stream_ids
from api.security import authenticated_user, runtime_of
from engine.store import StreamMissing

if TYPE_CHECKING:
    from engine.runtime import Runtime


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def ping(request: Request) -> Response:
    """``true`` while Redis answers; ``false`` with 503 when it does not."""
    if await redis_trouble(runtime_of(request)) is not None:
        return ORJSONResponse(False, status_code=503)
    return ORJSONResponse(True)


async def redis_trouble(runtime: Runtime) -> str | None:
    """Why Redis does not answer a PING now, or None when it does."""
    try:
        await runtime.control.ping()
    except (RedisError, OSError) as error:
        return str(error) or type(error).__name__
    return None


async def list_streams(request: Request) -> Response:
    authenticated_user(request)
    catalog = runtime_of(request).catalog
    sids = await catalog.stream_ids()
    if not flag(request.query_params, "info"):
        return ORJSONResponse(sids)
    infos = []
    for sid in sids:
        infos.append(await _info_or_error(request, sid))
    return ORJSONResponse(infos)


async def _info_or_error(request: Request, sid: str) -> dict[str, Any]:
    catalog = runtime_of(request).catalog
    try:
        return await catalog.info(sid)
    except StreamMissing as missing:
        return {"sid": sid, "meta": await catalog.meta(sid), "error": str(missing)}


async def stream(request: Request) -> Response:
    authenticated_user(request)
    sids = path_stream_ids(request)
    if request.method == "DELETE":
        deleted = await runtime_of(request).catalog.delete(sids)
        for deleted_sid in sids:
            await runtime_of(request).maxlens.changed(deleted_sid, None)
        return ORJSONResponse({"deleted": sids, "keys_removed": deleted})
    if len(sids) != 1:
        raise HTTPException(400, f"{request.method} /streams/{{sid}} takes one stream id, not {len(sids)}")
    sid = sids[0]
    if request.method == "PUT":
        return await _put_meta(request, sid)
    if flag(request.query_params, "report_error"):
        try:
            return ORJSONResponse(await runtime_of(request).catalog.info(sid))
        except StreamMissing as missing:
            raise HTTPException(400, str(missing)) from None
    return ORJSONResponse(await _info_or_error(request, sid))


async def _put_meta(request: Request, sid: str) -> Response:
    body = await read_body(request, METADATA_LIMIT)
    try:
        update = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"metadata must be a JSON object: {error}") from None
    if not isinstance(update, dict):
        raise HTTPException(400, "metadata must be a JSON object")
    override = flag(request.query_params, "override")
    stored = await runtime_of(request).catalog.put_meta(sid, update, override)
    await runtime_of(request).maxlens.changed(sid, stored)
    return ORJSONResponse(stored)
