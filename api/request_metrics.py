"""ASGI middleware counting every HTTP request for /metrics: by route template
(not the path: one series per route, whatever the stream ids), method and
status, with its duration until the response was sent."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.metrics import UNMATCHED_ROUTE, RequestStats


class RequestMetrics:
    def __init__(self, app: ASGIApp, stats: RequestStats):
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router put the matched route into the scope it was given.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.stats.record(route, scope["method"], status, time.perf_counter() - started)
