"""Query parameters as the original server read them (FastAPI's bool and int parsing)."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from engine.ids import split_stream_ids

_TRUE = {"1", "true", "on", "yes", "t", "y"}
_FALSE = {"0", "false", "off", "no", "f", "n"}


def flag(query: QueryParams, name: str, default: bool = False) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise HTTPException(400, f"query parameter {name!r} must be a boolean, not {value!r}")


def integer(query: QueryParams, name: str, default: int, minimum: int = 0) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"query parameter {name!r} must be an integer") from None
    if number < minimum:
        raise HTTPException(400, f"query parameter {name!r} must be at least {minimum}")
    return number


def path_stream_ids(request: HTTPConnection) -> list[str]:
    """The stream ids of the path's last part (``/streams/{sid}``, ``/data/{sid}``),
    read from the raw path: percent-decoded exactly once and strictly UTF-8
    (the decoded path has invalid bytes replaced, and a decoded '/' would
    already have split the path). Raises InvalidStreamId (400)."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    return split_stream_ids(raw_path.split(b"?", 1)[0].split(b"/", 2)[2])
