"""Query parameters of WebSocket endpoints, and the 400 answer to bad ones (sent
at the handshake, so no socket is opened)."""

from __future__ import annotations

import math
from http import HTTPStatus

import orjson
from picows import WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as Answer

_TRUE = {"1", "true", "on", "yes", "t", "y"}
_FALSE = {"0", "false", "off", "no", "f", "n", ""}


class BadQuery(ValueError):
    pass


def flag(query: dict[str, str], name: str, default: bool = False) -> bool:
    if name not in query:
        return default
    value = query[name].lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadQuery(f"query parameter {name!r} must be a boolean, not {query[name]!r}")


def integer(query: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    value = query.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadQuery(f"query parameter {name!r} must be an integer, not {value!r}") from None
    if number < minimum:
        raise BadQuery(f"query parameter {name!r} must be at least {minimum}")
    return number


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
