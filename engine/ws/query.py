"""Query parameters of WebSocket endpoints, and the 400 answer to bad ones (sent
at the handshake, so no socket is opened)."""

from __future__ import annotations

import math
from http import HTTPStatus

import orjson
from picows import WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as Answer

from engine.query import BadQuery, boolean, whole_number

__all__ = ["BadQuery", "bad_request", "flag", "integer", "number"]


def flag(query: dict[str, str], name: str, default: bool = False) -> bool:
    return boolean(name, query[name]) if name in query else default


def integer(query: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    value = query.get(name, "")
    return whole_number(name, value, minimum) if value else default


def number(query: dict[str, str], name: str, default: float = 0.0) -> float:
    """A finite number, zero or more."""
    value = query.get(name, "")
    if value == "":
        return default
    try:
        result = float(value)
    except ValueError:
        raise BadQuery(f"query parameter {name!r} must be a number, not {value!r}") from None
    if not math.isfinite(result) or result < 0:
        raise BadQuery(f"query parameter {name!r} must be a finite number, zero or more")
    return result


def bad_request(error: BadQuery | ValueError) -> Answer:
    body = orjson.dumps({"detail": str(error)})
    response = WSUpgradeResponse.create_error_response(
        HTTPStatus.BAD_REQUEST, body, {"Content-Type": "application/json"}
    )
    return Answer(response, None)
