"""Query parameter values as the original server read them (FastAPI's bool and int
parsing), shared by the WebSocket endpoints and the REST app."""

from __future__ import annotations

_TRUE = {"1", "true", "on", "yes", "t", "y"}
_FALSE = {"0", "false", "off", "no", "f", "n", ""}


class BadQuery(ValueError):
    """A query parameter the endpoint cannot use; str() says which and why."""


def boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadQuery(f"query parameter {name!r} must be a boolean, not {value!r}")


def whole_number(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadQuery(f"query parameter {name!r} must be an integer, not {value!r}") from None
    if number < minimum:
        raise BadQuery(f"query parameter {name!r} must be at least {minimum}")
    return number
