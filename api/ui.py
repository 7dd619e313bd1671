"""/ui: the live web console, one page of HTML and JavaScript that uses only
the public API (it logs in through /token like any client)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse

PAGE = (Path(__file__).parent / "static" / "ui.html").read_text(encoding="utf-8")


async def console(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})
