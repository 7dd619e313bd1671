"""/openapi.json and an offline /docs page (Swagger UI assets from swagger-ui-bundle)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from api.openapi import SPEC

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PTG data store engine: API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  persistAuthorization: true,
  withCredentials: true
});
</script>
</body>
</html>
"""

assets = StaticFiles(directory=swagger_ui_path)


async def openapi_json(request: Request) -> Response:
    return JSONResponse(SPEC)


async def docs_page(request: Request) -> Response:
    return HTMLResponse(_PAGE)
