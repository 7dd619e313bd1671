"""Routes a WebSocket upgrade request: path, token, stream ids -> a picows listener.

Runs inside picows' handshake, before it validates the upgrade headers, so
an answer other than a listener (401, 404) is sent as a plain HTTP response
and no socket is opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson
from picows import WSCloseCode, WSListener, WSUpgradeRequest, WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as Answer

from engine.auth import AuthError, find_token
from engine.ids import InvalidStreamId, split_stream_ids
from engine.ws.listeners import ClosingListener
from engine.ws.pull import pull_endpoint
from engine.ws.push import push_endpoint

if TYPE_CHECKING:
    from engine.runtime import Runtime

# (runtime, stream ids, query, user) -> listener; one per endpoint.
EndpointFactory = Callable[["Runtime", list[str], dict[str, str], str], WSListener | Answer]

ENDPOINTS: dict[str, EndpointFactory] = {"push": push_endpoint, "pull": pull_endpoint}
WEBSOCKET_VERSION = "13"

log = logging.getLogger("engine.ws")


def _error(status: HTTPStatus, detail: str, headers: dict[str, str] | None = None) -> Answer:
    body = orjson.dumps({"detail": detail})
    extra = {"Content-Type": "application/json", **(headers or {})}
    return Answer(WSUpgradeResponse.create_error_response(status, body, extra), None)


def _cookies(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _normalize_connection_header(request: WSUpgradeRequest) -> None:
    # Browsers (Firefox) send "Connection: keep-alive, Upgrade", a valid token
    # list that picows' strict check refuses; it checks after routing.
    value = request.headers.get("connection", "")
    tokens = {token.strip().lower() for token in value.split(",")}
    if "upgrade" in tokens:
        request.headers["connection"] = "Upgrade"


class WebSocketRouter:
    """The listener factory given to picows for every upgrade on the engine's port."""

    def __init__(self, runtime: Runtime, endpoints: dict[str, EndpointFactory] | None = None):
        self.runtime = runtime
        self.endpoints = ENDPOINTS if endpoints is None else endpoints

    def __call__(self, request: WSUpgradeRequest) -> WSListener | Answer | None:
        try:
            return self._route(request)
        except Exception:
            # picows would put the exception's text in the response.
            log.exception("routing a WebSocket upgrade failed")
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error")

    def _route(self, request: WSUpgradeRequest) -> WSListener | Answer | None:
        target = request.path.decode("latin-1")
        path, _, query_string = target.partition("?")
        parts = path.split("/")
        # "/data/{sid}/push" splits into ["", "data", sid, "push"]
        if len(parts) != 4 or parts[0] or parts[1] != "data" or parts[3] not in self.endpoints:
            return None
        if request.headers.get("sec-websocket-version") != WEBSOCKET_VERSION:
            # RFC 6455 4.4: say which version the server speaks.
            return _error(
                HTTPStatus.UPGRADE_REQUIRED,
                f"only WebSocket version {WEBSOCKET_VERSION} (RFC 6455) is spoken here",
                {"Sec-WebSocket-Version": WEBSOCKET_VERSION},
            )
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        headers = {"authorization": request.headers.get("authorization", "")}
        try:
            user = self.runtime.signer.verify(
                find_token(query, headers, _cookies(request.headers.get("cookie")))
            )
        except AuthError as error:
            return _error(HTTPStatus.UNAUTHORIZED, str(error), {"WWW-Authenticate": "Bearer"})
        _normalize_connection_header(request)
        try:
            sids = split_stream_ids(parts[2].encode("latin-1"))
        except InvalidStreamId as error:
            return ClosingListener(
                WSCloseCode.POLICY_VIOLATION, f"bad stream id: {error}", self.runtime.counters, parts[2]
            )
        return self.endpoints[parts[3]](self.runtime, sids, query, user)
