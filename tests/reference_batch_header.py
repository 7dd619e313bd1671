"""The batch header rules of PROTOCOL.md ("WebSocket push") in plain Python on
``json.loads``: slow and obvious, the reference the Cython parser must agree with.

Precedence of refusals: every malformed-input refusal (1007) wins over a
stream the socket may not use (1008), so both parsers agree on the close code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from engine._core import InvalidStreamId, check_stream_id

UINT64_MAX = 2**64 - 1
_WS = r"[ \t\n\r]*"
_INT = r"-?(?:0|[1-9][0-9]*)"
COMMA_LINE = re.compile(rf"{_WS}{_INT}(?:{_WS},{_WS}{_INT})*{_WS}")
ENTRY_ID_TEXT = re.compile(r"([0-9]+)(?:-([0-9]+|\*))?")

Entry = tuple[bytes, bytes, int, int]


class Rejected(Exception):
    """The reference refuses the header with this close code."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


def reject(reason: str, close_code: int = 1007) -> Rejected:
    return Rejected(close_code, reason)


class _Fraction:
    """What a JSON number with a fraction or exponent parses to: never an integer."""


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _text(header: str | bytes) -> str:
    try:
        if isinstance(header, str):
            header.encode("utf-8")
            return header
        return bytes(header).decode("utf-8")
    except UnicodeError:
        raise reject("not UTF-8 text") from None


def _items(text: str) -> list[object]:
    try:
        value = json.loads(text, parse_float=lambda _: _Fraction(), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        if not COMMA_LINE.fullmatch(text):
            raise reject("neither JSON nor a comma line") from None
        try:
            return [int(part) for part in text.split(",")]
        except ValueError:  # beyond Python's int/str digit limit: out of range anyway
            raise reject("huge integer") from None
    if type(value) is int:
        return [value]  # "7" is a comma line of one offset
    if type(value) is not list:
        raise reject("not a list")
    return value


def _form(item: object) -> int:
    """1: OFFSET, 2: [SID, OFFSET], 3: [SID, TS, OFFSET]."""
    if type(item) is int:
        return 1
    if type(item) is list and len(item) in (2, 3):
        return len(item)
    raise reject("bad item")


def _entry_id(ts: object) -> bytes:
    if ts is None or ts == "*":
        return b"*"
    if type(ts) is int:
        if not 0 <= ts <= UINT64_MAX:
            raise reject("timestamp out of range")
        return b"%d-*" % ts
    if type(ts) is not str:
        raise reject("bad timestamp type")
    match = ENTRY_ID_TEXT.fullmatch(ts)
    if not match:
        raise reject("bad entry id text")
    ms = int(match[1])
    if ms > UINT64_MAX:
        raise reject("ms out of range")
    if match[2] is None or match[2] == "*":
        return b"%d-*" % ms
    seq = int(match[2])
    if seq > UINT64_MAX:
        raise reject("seq out of range")
    if ms == 0 and seq == 0:
        raise reject("0-0")
    return b"%d-%d" % (ms, seq)


def _bounds(offsets: list[int], blob_len: int, mode: str) -> list[tuple[int, int]]:
    first, last = offsets[0], offsets[-1]
    if mode == "auto":
        if last == blob_len:
            mode = "end"
        elif first == 0:
            mode = "start"
        else:
            raise reject("neither start nor end offsets")
    if mode == "start":
        if first != 0:
            raise reject("start offsets must begin at 0")
        return list(zip(offsets, [*offsets[1:], blob_len], strict=True))
    if last != blob_len:
        raise reject("last end offset is not the blob length")
    return list(zip([0, *offsets[:-1]], offsets, strict=True))


def reference_parse(
    header: str | bytes,
    blob_len: int,
    offsets: str = "auto",
    route_mode: str = "single",
    route_sids: Sequence[str] = (),
) -> list[Entry]:
    """Entries ``(key, entry_id, start, end)`` of a header, or raise Rejected."""
    items = _items(_text(header))
    if not items:
        raise reject("no entries")
    form = _form(items[0])
    if any(_form(item) != form for item in items):
        raise reject("mixed forms")

    sids: list[object] = []
    entry_ids: list[bytes] = []
    header_offsets: list[object] = []
    for item in items:
        if form == 1:
            header_offsets.append(item)
            entry_ids.append(b"*")
            continue
        assert isinstance(item, list)
        if type(item[0]) is not str:
            raise reject("stream id is not a string")
        sids.append(item[0])
        header_offsets.append(item[-1])
        entry_ids.append(_entry_id(item[1]) if form == 3 else b"*")

    checked: list[int] = []
    for offset in header_offsets:
        if type(offset) is not int:
            raise reject("offset is not an integer")
        if not 0 <= offset <= blob_len:
            raise reject("offset outside the blob")
        if checked and offset < checked[-1]:
            raise reject("offsets decrease")
        checked.append(offset)
    bounds = _bounds(checked, blob_len, offsets)

    route_keys = [check_stream_id(sid) for sid in route_sids]
    if route_mode == "single":
        keys = route_keys * len(items)
    elif form == 1:
        if route_mode == "any":
            raise reject("'*' needs stream ids")
        if len(items) != len(route_keys):
            raise reject("count does not match the listed streams")
        keys = route_keys
    else:
        keys = []
        for sid in sids:
            assert isinstance(sid, str)
            try:
                keys.append(check_stream_id(sid))
            except InvalidStreamId:
                raise reject("bad stream id") from None
        if route_mode == "listed" and any(key not in route_keys for key in keys):
            raise reject("stream not in the path", 1008)
    return [
        (key, entry_id, start, end)
        for key, entry_id, (start, end) in zip(keys, entry_ids, bounds, strict=True)
    ]
