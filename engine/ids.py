"""Stream ids in paths: ``a+b+c`` segments, percent-decoded exactly once, each id validated."""

from __future__ import annotations

from urllib.parse import unquote

from engine._core import InvalidStreamId, check_stream_id

META_PREFIX = "XMETA:"

__all__ = ["META_PREFIX", "InvalidStreamId", "check_stream_id", "meta_key", "split_stream_ids"]


def split_stream_ids(segment: str, *, decoded: bool = True) -> list[str]:
    """The stream ids named by one path segment (``*`` is an ordinary id here; the
    push endpoint gives a lone ``*`` its routing meaning).

    ``decoded`` says whether the server already percent-decoded the segment
    (Starlette does; picows hands the raw request target).
    """
    text = segment if decoded else unquote(segment, errors="strict")
    sids = text.split("+")
    for sid in sids:
        check_stream_id(sid)
    if len(set(sids)) != len(sids):
        raise InvalidStreamId(f"stream ids in {text!r} repeat")
    return sids


def meta_key(sid: str) -> str:
    return META_PREFIX + sid
