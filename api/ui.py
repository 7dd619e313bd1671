"""/ui: the live web console, one page of HTML and JavaScript that uses only
the public API (it logs in through /token like any client)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

PAGE = (Path(__file__).parent / "static" / "ui.html").read_text(encoding="utf-8")


async def console(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})


# The icon browsers ask every page of the engine for (/docs, /ui): without it
# each page logs a 404 to the browser console.
ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#1f6feb"/>'
    b'<path d="M4 12V4h4a2.5 2.5 0 0 1 0 5H4" fill="none" stroke="#fff" stroke-width="2"/></svg>'
)


async def favicon(request: Request) -> Response:
    return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})
