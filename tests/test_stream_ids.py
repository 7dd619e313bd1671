"""Stream id rules (PROTOCOL.md) against a plain-Python statement of them."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.ids import InvalidStreamId, check_stream_id, split_stream_ids


def reference_ok(sid: str) -> bool:
    try:
        encoded = sid.encode()
    except UnicodeEncodeError:
        return False
    return (
        0 < len(encoded) <= 256
        and not encoded.startswith(b"XMETA:")
        and not any(c in "+/" or c.isspace() or unicodedata.category(c) == "Cc" for c in sid)
    )


@given(st.text(max_size=300))
def test_agrees_with_the_reference_on_any_text(sid: str) -> None:
    if reference_ok(sid):
        assert check_stream_id(sid) == sid.encode()
    else:
        with pytest.raises(InvalidStreamId):
            check_stream_id(sid)


@given(
    st.text(
        st.characters(blacklist_categories=("Cc", "Zs", "Zl", "Zp", "Cs"), blacklist_characters="+/"),
        min_size=1,
        max_size=60,
    )
)
def test_ordinary_ids_are_accepted(sid: str) -> None:
    if not sid.startswith("XMETA:") and not any(c.isspace() for c in sid):
        assert check_stream_id(sid) == sid.encode()


@pytest.mark.parametrize(
    "sid", ["main", "cam:1", "é" * 128, "a%2Fb", "XMETA", "xmeta:lower", "*x", "a.b-c_d"]
)
def test_accepted(sid: str) -> None:
    assert check_stream_id(sid) == sid.encode()


@pytest.mark.parametrize(
    ("sid", "reason"),
    [
        ("", "empty"),
        ("a+b", "'+'"),
        ("a/b", "'/'"),
        ("a b", "' '"),
        ("a\tb", "'\\t'"),
        ("a\x7fb", "'\\x7f'"),
        ("a\x85b", "forbidden"),
        ("a\u2028b", "forbidden"),
        ("XMETA:x", "reserved prefix"),
        ("é" * 129, "258 bytes"),
        ("\ud800", "not valid Unicode"),
    ],
)
def test_refused_with_the_reason(sid: str, reason: str) -> None:
    with pytest.raises(InvalidStreamId, match="stream id") as refused:
        check_stream_id(sid)
    assert reason in str(refused.value)


def test_split_decodes_a_raw_segment_exactly_once() -> None:
    assert split_stream_ids(b"a%2541+caf%C3%A9") == ["a%41", "café"]
    assert split_stream_ids("caf\u00e9".encode()) == ["café"]  # raw UTF-8 bytes on the wire
    assert split_stream_ids("a%41") == ["a%41"]  # str: already decoded
    assert split_stream_ids("*") == ["*"]
    with pytest.raises(InvalidStreamId, match="repeat"):
        split_stream_ids("a+a")
    with pytest.raises(InvalidStreamId, match="forbidden"):
        split_stream_ids(b"a%2Fb")
    with pytest.raises(InvalidStreamId, match="UTF-8"):
        split_stream_ids(b"%FF")
    with pytest.raises(InvalidStreamId, match="UTF-8"):
        split_stream_ids(b"ok\xffno")
