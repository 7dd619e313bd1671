"""Query parameters of the REST endpoints (a missing or empty value takes the default;
bad ones are a 400)."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from engine.ids import split_stream_ids
from engine.query import BadQuery, boolean, whole_number


def flag(query: QueryParams, name: str, default: bool = False) -> bool:
    value = query.get(name)
    if not value:
        return default
    try:
        return boolean(name, value)
    except BadQuery as error:
        raise HTTPException(400, str(error)) from None


def integer(query: QueryParams, name: str, default: int, minimum: int = 0) -> int:
    value = query.get(name)
    if not value:
        return default
    try:
        return whole_number(name, value, minimum)
    except BadQuery as error:
        raise HTTPException(400, str(error)) from None


def path_stream_ids(request: HTTPConnection) -> list[str]:
    """The stream ids of the path's last part (``/streams/{sid}``, ``/data/{sid}``),
    read from the raw path: percent-decoded exactly once and strictly UTF-8
    (the decoded path has invalid bytes replaced, and a decoded '/' would
    already have split the path). Raises InvalidStreamId (400)."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    return split_stream_ids(raw_path.split(b"?", 1)[0].split(b"/", 2)[2])
