"""/metrics: the Prometheus text format (engine.metrics), unauthenticated like
/ping: it names no stream, and scrapers seldom carry tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from engine.metrics import CONTENT_TYPE


async def metrics(request: Request) -> Response:
    return Response(await request.app.state.metrics.render(), media_type=CONTENT_TYPE)
