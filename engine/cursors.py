"""Where a read starts: the ``last_entry_id`` of GET /data and of pull sockets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from engine._core import entry_id_form

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


def parse_cursor(text: str) -> Cursor:
    if text == "*":
        return Cursor("newest")
    if text == "$":
        return Cursor("now")
    try:
        form, ms, seq = entry_id_form(text)
    except OverflowError:
        raise BadCursor(f"last_entry_id {text!r} is out of range") from None
    except ValueError:
        form, ms, seq = "*", 0, 0  # refused below
    if form not in ("ms", "ms-seq"):
        raise BadCursor(f"last_entry_id {text!r} is not '*', '$', '0' or an entry id '<ms>-<seq>'")
    return Cursor("id", ms, seq)


def parse_cursors(value: str, streams: int) -> list[Cursor]:
    """One cursor per stream: ``value`` is one id for all, or one per stream joined by '+'."""
    parts = _SEPARATOR.split(value)
    if len(parts) == 1:
        return [parse_cursor(parts[0])] * streams
    if len(parts) != streams:
        raise BadCursor(f"last_entry_id names {len(parts)} ids for {streams} streams")
    return [parse_cursor(part) for part in parts]
