"""Where a read starts: the ``last_entry_id`` of GET /data and of pull sockets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

UINT64_MAX = 2**64 - 1
_ENTRY_ID = re.compile(r"([0-9]+)(?:-([0-9]+))?", re.ASCII)
# '+' separates per-stream ids; a '+' left unencoded in a query string arrives as ' '.
_SEPARATOR = re.compile(r"[+ ]")

CursorKind = Literal["id", "now", "newest"]


class BadCursor(ValueError):
    """A ``last_entry_id`` that is not ``*``, ``$``, ``0`` or a Redis entry id."""


@dataclass(frozen=True)
class Cursor:
    """``newest`` (``*``): the latest entries; ``now`` (``$``): only entries added
    from now on; ``id``: the entries after ``ms-seq`` (``0`` is 0-0)."""

    kind: CursorKind
    ms: int = 0
    seq: int = 0

    def as_tuple(self) -> tuple[CursorKind, int, int]:
        return (self.kind, self.ms, self.seq)

    @property
    def after(self) -> str:
        """The exclusive XRANGE start after this id."""
        return f"({self.ms}-{self.seq}"


def parse_cursor(text: str) -> Cursor:
    if text == "*":
        return Cursor("newest")
    if text == "$":
        return Cursor("now")
    match = _ENTRY_ID.fullmatch(text)
    if match is None:
        raise BadCursor(f"last_entry_id {text!r} is not '*', '$', '0' or an entry id '<ms>-<seq>'")
    ms = int(match.group(1))
    seq = int(match.group(2) or 0)
    if ms > UINT64_MAX or seq > UINT64_MAX:
        raise BadCursor(f"last_entry_id {text!r} is out of range")
    return Cursor("id", ms, seq)


def parse_cursors(value: str, streams: int) -> list[Cursor]:
    """One cursor per stream: ``value`` is one id for all, or one per stream joined by '+'."""
    parts = _SEPARATOR.split(value)
    if len(parts) == 1:
        return [parse_cursor(parts[0])] * streams
    if len(parts) != streams:
        raise BadCursor(f"last_entry_id names {len(parts)} ids for {streams} streams")
    return [parse_cursor(part) for part in parts]
