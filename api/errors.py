"""Every error is JSON ``{"detail": ...}``; no stack trace reaches a client."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.ids import InvalidStreamId

log = logging.getLogger("engine.api")


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code in (204, 304):
        return Response(status_code=error.status_code, headers=error.headers)
    return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)


async def bad_stream_id(request: Request, error: Exception) -> Response:
    return JSONResponse({"detail": f"bad stream id: {error}"}, 400)


async def server_fault(request: Request, error: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, 500)


EXCEPTION_HANDLERS = {
    HTTPException: http_error,
    InvalidStreamId: bad_stream_id,
    Exception: server_fault,
}
