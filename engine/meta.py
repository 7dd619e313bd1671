"""Stream metadata as stored in Redis: a JSON object under ``XMETA:<sid>``."""

from __future__ import annotations

from typing import Any

import orjson

# The metadata key of a stream: a stream id never starts with it (engine.ids).
META_PREFIX = "XMETA:"


def meta_key(sid: str) -> str:
    return META_PREFIX + sid


def parse_meta(raw: bytes | str) -> dict[str, Any]:
    """The metadata object stored as ``raw``. Metadata written by other tools may not
    be a JSON object: it is shown as ``{"value": ...}`` rather than refused."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"value": raw.decode(errors="replace") if isinstance(raw, bytes) else raw}
    return value if isinstance(value, dict) else {"value": value}


def max_len_of(meta: dict[str, Any] | None, default: int) -> int:
    """``max_len`` of a stream's metadata when it is a positive integer, else ``default``."""
    value = meta.get("max_len") if meta is not None else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default
