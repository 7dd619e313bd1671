"""The Starlette app: tokens, health, stream metadata, data, API docs (HTTP only;
WebSockets are served by picows on the same port, see engine.front)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route

from api import data, docs, health, metrics, mjpeg, streams, token, ui, upload
from api.errors import EXCEPTION_HANDLERS
from api.limits import BodyDeadline
from api.request_metrics import RequestMetrics
from engine.metrics import Metrics
from engine.runtime import Runtime

ROUTES = [
    Route("/token", token.issue_token, methods=["POST"]),
    Route("/ping", streams.ping, methods=["GET"]),
    Route("/health", health.health, methods=["GET"]),
    Route("/metrics", metrics.metrics, methods=["GET"]),
    Route("/streams/", streams.list_streams, methods=["GET"]),
    Route("/streams", streams.list_streams, methods=["GET"]),
    # {sid:path}: a percent-encoded '/' decodes into the id and is refused as
    # a bad id (400) instead of silently routing somewhere else.
    Route("/streams/{sid:path}", streams.stream, methods=["GET", "PUT", "DELETE"]),
    # Before /data/{sid:path}: {sid} matches one path segment only.
    Route("/data/{sid}/mjpeg", mjpeg.mjpeg, methods=["GET"]),
    Route("/data/{sid:path}", upload.post_entries, methods=["POST"]),
    Route("/data/{sid:path}", data.read_entries, methods=["GET"]),
    Route("/openapi.json", docs.openapi_json, methods=["GET"]),
    Route("/docs", docs.docs_page, methods=["GET"]),
    Route("/ui", ui.console, methods=["GET"]),
    Route("/favicon.ico", ui.favicon, methods=["GET"]),
    Mount("/docs/assets", app=docs.assets),
]


def create_app(runtime: Runtime) -> Starlette:
    """The HTTP app of an engine process, serving from ``runtime`` (which the engine
    opened and will close: the app creates nothing long-lived)."""
    app = Starlette(
        routes=ROUTES,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(RequestMetrics, stats=runtime.http_stats),
            Middleware(BodyDeadline, grace=runtime.config.body_timeout),
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["*"],
                allow_headers=["*"],
                allow_credentials=True,
                expose_headers=["entry-offset", "entry-truncated"],
            ),
        ],
    )
    app.state.runtime = runtime
    app.state.metrics = Metrics(runtime, runtime.metrics_share)
    return app
