"""Stream ids in paths: ``a+b+c`` segments, percent-decoded exactly once, each id validated."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from engine._core import InvalidStreamId, check_stream_id

__all__ = ["InvalidStreamId", "check_stream_id", "split_stream_ids"]


def split_stream_ids(segment: str | bytes) -> list[str]:
    """The stream ids named by one path segment (``*`` is an ordinary id here; the
    push endpoint gives a lone ``*`` its routing meaning).

    A ``bytes`` segment is raw, as it came on the wire: it is percent-decoded
    exactly once, and must then be UTF-8. A ``str`` is taken as decoded.
    """
    if isinstance(segment, bytes):
        try:
            text = unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidStreamId("stream id is not valid UTF-8 once percent-decoded") from None
    else:
        text = segment
    sids = text.split("+")
    for sid in sids:
        check_stream_id(sid)
    if len(set(sids)) != len(sids):
        raise InvalidStreamId(f"stream ids in {text!r} repeat")
    return sids
