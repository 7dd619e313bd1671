"""The Starlette app: tokens, health, stream metadata, API docs (HTTP only;
WebSockets are served by picows on the same port, see engine.front)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route

from api import data, docs, streams, token, upload
from api.errors import EXCEPTION_HANDLERS
from engine.config import Config, resolve
from engine.runtime import Runtime
from engine.ws.router import WebSocketRouter

ROUTES = [
    Route("/token", token.issue_token, methods=["POST"]),
    Route("/ping", streams.ping, methods=["GET"]),
    Route("/streams/", streams.list_streams, methods=["GET"]),
    Route("/streams", streams.list_streams, methods=["GET"]),
    # {sid:path}: a percent-encoded '/' decodes into the id and is refused as
    # a bad id (400) instead of silently routing somewhere else.
    Route("/streams/{sid:path}", streams.stream, methods=["GET", "PUT", "DELETE"]),
    Route("/data/{sid:path}", upload.post_entries, methods=["POST"]),
    Route("/data/{sid:path}", data.read_entries, methods=["GET"]),
    Route("/openapi.json", docs.openapi_json, methods=["GET"]),
    Route("/docs", docs.docs_page, methods=["GET"]),
    Mount("/docs/assets", app=docs.assets),
]


def create_app(config: Config | None = None) -> Starlette:
    """The ASGI app. Without ``config``, it is read from PTG_* variables (worker processes)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        settings = config or resolve({}, os.environ)
        if not settings.redis_url:
            raise RuntimeError("create_app needs a Redis URL (PTG_REDIS_URL)")
        runtime = await Runtime.open(settings, settings.redis_url)
        try:
            yield {"engine": runtime, "ws_router": WebSocketRouter(runtime)}
        finally:
            await runtime.close()

    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["*"],
                allow_headers=["*"],
                allow_credentials=True,
                expose_headers=["entry-offset"],
            )
        ],
    )
