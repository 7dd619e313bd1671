"""/data/{sid}/push: query parsing and routing for a producer socket (the
per-frame work is engine._core.PushSession)."""

from __future__ import annotations

from http import HTTPStatus

from picows import WSListener, WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as Answer

from engine._core import BatchRoute, PushSession
from engine.runtime import Runtime

_TRUE = {"1", "true", "on", "yes", "t", "y"}
_FALSE = {"0", "false", "off", "no", "f", "n", ""}


class BadQuery(ValueError):
    pass


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadQuery(f"query parameter {name!r} must be a boolean, not {query[name]!r}")


def push_endpoint(runtime: Runtime, sids: list[str], query: dict[str, str], user: str) -> WSListener | Answer:
    try:
        batch, ack = _flag(query, "batch"), _flag(query, "ack")
        offsets = query.get("offsets", "auto") or "auto"
        if offsets not in ("auto", "start", "end"):
            raise BadQuery(f"offsets must be 'auto', 'start' or 'end', not {offsets!r}")
    except BadQuery as error:
        body = f'{{"detail": "{error}"}}'.encode()
        response = WSUpgradeResponse.create_error_response(
            HTTPStatus.BAD_REQUEST, body, {"Content-Type": "application/json"}
        )
        return Answer(response, None)
    if sids == ["*"]:
        route = BatchRoute("any")
    elif len(sids) > 1:
        route = BatchRoute("listed", sids)
    else:
        route = BatchRoute("single", sids)
    return PushSession(
        runtime.ingest,
        runtime.maxlens.values,
        runtime.maxlens.load,
        route,
        batch,
        ack,
        offsets,
        runtime.config.max_message_size,
    )
