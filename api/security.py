"""The caller of an HTTP endpoint, from its token."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from engine.auth import AuthError, find_token
from engine.runtime import Runtime


def runtime_of(request: HTTPConnection) -> Runtime:
    """The runtime the app was created with (api.app.create_app)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def authenticated_user(request: HTTPConnection) -> str:
    """The user named by the request's token; 401 with ``WWW-Authenticate: Bearer`` otherwise."""
    try:
        token = find_token(request.query_params, request.headers, request.cookies)
        return runtime_of(request).signer.verify(token)
    except AuthError as error:
        raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None
