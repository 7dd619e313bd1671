"""Every error is JSON ``{"detail": ...}``; no stack trace reaches a client."""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from engine._core import RedisUnavailable
from engine.ids import InvalidStreamId

log = logging.getLogger("engine.api")


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code in (204, 304):
        return Response(status_code=error.status_code, headers=error.headers)
    return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)


async def bad_stream_id(request: Request, error: Exception) -> Response:
    return JSONResponse({"detail": f"bad stream id: {error}"}, 400)


async def redis_unavailable(request: Request, error: Exception) -> Response:
    # Whichever connection noticed first (control, ingest or read): one answer.
    log.debug("%s %s while Redis is unreachable: %s", request.method, request.url.path, error)
    return JSONResponse({"detail": "Redis is unavailable"}, 503)


async def client_gone(request: Request, error: Exception) -> Response:
    # The client left mid-request: nothing to answer, and nothing the server did wrong.
    log.debug("client left during %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def server_fault(request: Request, error: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, 500)


EXCEPTION_HANDLERS = {
    HTTPException: http_error,
    InvalidStreamId: bad_stream_id,
    RedisUnavailable: redis_unavailable,
    RedisConnectionError: redis_unavailable,
    RedisTimeoutError: redis_unavailable,
    ClientDisconnect: client_gone,
    Exception: server_fault,
}
