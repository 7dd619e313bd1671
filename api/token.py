"""POST /token: OAuth2 password flow -> a JWT, also set as the ``authorization`` cookie."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.params import integer
from api.security import runtime_of


async def issue_token(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    try:
        form = await request.form()
    except Exception:
        raise HTTPException(400, "expected a form with username and password") from None
    user, password = form.get("username"), form.get("password")
    if not isinstance(user, str) or not isinstance(password, str) or not user:
        raise HTTPException(401, "username and password are required", headers={"WWW-Authenticate": "Bearer"})
    # scrypt takes ~50 ms of CPU: off the event loop, which serves every socket.
    if not await run_in_threadpool(runtime.login_ok, user, password):
        raise HTTPException(401, "incorrect username or password", headers={"WWW-Authenticate": "Bearer"})
    lifetime = runtime.signer.lifetime
    seconds = min(integer(request.query_params, "exp", lifetime, minimum=1), lifetime)
    token, expires = runtime.signer.issue(user, seconds)
    response = JSONResponse({"access_token": token, "token_type": "bearer", "exp": expires})
    response.set_cookie(
        "authorization",
        f"Bearer {token}",
        max_age=seconds,
        httponly=True,
        samesite="lax",
        secure=runtime.config.tls,
    )
    return response
