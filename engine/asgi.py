"""What uvicorn serves: the engine's own lifespan (open the Runtime, close it)
around the HTTP app built from that runtime.

The HTTP layer (package ``api``) sits above the engine: it is named here, not
imported (no module of ``engine`` imports ``api``; tests/test_layers.py), the
same way uvicorn names the app of a spawned worker process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from uvicorn.importer import import_from_string

from engine.config import Config, resolve
from engine.process import die_with_parent
from engine.runtime import Runtime

log = logging.getLogger("engine")

ASGIApp = Callable[..., Any]
HttpAppFactory = Callable[[Runtime], ASGIApp]
HTTP_APP = "api.app:create_app"


class EngineApp:
    """An ASGI app: on startup it opens the engine's Runtime and builds the HTTP
    app with it; on shutdown it closes the runtime. uvicorn hands the lifespan
    state (``runtime``) to every connection's protocol (engine.front)."""

    def __init__(self, config: Config, http_app: HttpAppFactory | str = HTTP_APP):
        self.config = config
        self.http_factory: HttpAppFactory = (
            import_from_string(http_app) if isinstance(http_app, str) else http_app
        )
        self.runtime: Runtime | None = None
        self.http: ASGIApp | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.http is None:
            raise RuntimeError("the engine serves requests only once it has started")
        await self.http(scope, receive, send)

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        try:
            self.runtime = await Runtime.open(self.config)
            try:
                self.http = self.http_factory(self.runtime)
            except BaseException:
                await self.runtime.close()
                raise
        except Exception as error:
            log.error("cannot start: %s", error)
            await send({"type": "lifespan.startup.failed", "message": str(error)})
            return
        scope["state"]["runtime"] = self.runtime
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self.runtime.close()
        finally:
            await send({"type": "lifespan.shutdown.complete"})


def worker_app() -> EngineApp:
    """The app of a spawned worker process (``--workers N``): its configuration
    comes from the PTG_* variables the supervisor exported. A worker dies with
    its supervisor, even a supervisor killed with SIGKILL: none is left holding
    the port."""
    die_with_parent()
    return EngineApp(resolve({}, os.environ))
