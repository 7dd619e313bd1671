"""The small rules of engine._core that have one home each: entry ids, close
reasons, stream read commands, option objects, the shard map and the counters;
fed valid and hostile input (hypothesis)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._core import (
    BatchRoute,
    Counters,
    PullOptions,
    PushOptions,
    Shards,
    StreamKey,
    close_reason,
    entry_id_form,
    key_slot,
    parse_entry_id,
    stream_read,
)

UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
_REFERENCE = re.compile(r"(\*)|([0-9]+)(?:-(\*|[0-9]+))?", re.ASCII)


def reference_form(text: str) -> tuple[str, int, int] | str:
    """What entry_id_form should answer, by a regular expression and Python ints."""
    match = _REFERENCE.fullmatch(text)
    if match is None:
        return "invalid"
    if match.group(1):
        return ("*", 0, 0)
    ms = int(match.group(2))
    seq_text = match.group(3)
    seq = int(seq_text) if seq_text not in (None, "*") else 0
    if ms >= 2**64 or seq >= 2**64:
        return "too large"
    form = "ms" if seq_text is None else "ms-*" if seq_text == "*" else "ms-seq"
    return (form, ms, seq)


@given(UINT64, UINT64)
def test_entry_ids_round_trip(ms: int, seq: int) -> None:
    assert parse_entry_id(f"{ms}-{seq}") == (ms, seq)
    assert parse_entry_id(f"{ms}-{seq}".encode()) == (ms, seq)
    assert entry_id_form(f"{ms}-{seq}") == ("ms-seq", ms, seq)
    assert entry_id_form(f"{ms}-*") == ("ms-*", ms, 0)
    assert entry_id_form(str(ms)) == ("ms", ms, 0)


@given(
    st.text(alphabet="0123456789-*+ x\u0661", max_size=45)
    | st.from_regex(r"[0-9]{18,22}-[0-9x*]{0,22}", fullmatch=True)
    | st.text(max_size=20)
)
def test_entry_id_forms_match_a_reference(text: str) -> None:
    expected = reference_form(text)
    if expected == "invalid":
        with pytest.raises(ValueError):
            entry_id_form(text)
    elif expected == "too large":
        with pytest.raises(OverflowError):
            entry_id_form(text)
    else:
        assert entry_id_form(text) == expected


@pytest.mark.parametrize(
    "text", ["", "-", "1-", "-1", "1-2-3", "1--2", " 1-2", "1-2 ", "+1-2", "18446744073709551616-0"]
)
def test_what_redis_never_writes_is_not_an_entry_id(text: str) -> None:
    with pytest.raises(ValueError):
        parse_entry_id(text)


@given(st.text(max_size=300))
def test_close_reasons_fit_a_close_frame_on_a_character_boundary(reason: str) -> None:
    fitted = close_reason(reason)
    assert len(fitted) <= 123
    text = fitted.decode("utf-8")  # never a character cut in two
    if len(reason.encode("utf-8", "backslashreplace")) <= 123:
        assert fitted == reason.encode("utf-8", "backslashreplace")
    else:
        assert text.endswith("...")


def test_stream_reads_are_built_in_one_place() -> None:
    key = StreamKey("cam")
    assert stream_read(key, 5, True) == (b"XREVRANGE", b"cam", b"+", b"-", b"COUNT", 5)
    assert stream_read(key, 5, True, (7, 1)) == (b"XREVRANGE", b"cam", b"+", b"(7-1", b"COUNT", 5)
    assert stream_read(key, 2, False, (7, 1)) == (b"XRANGE", b"cam", b"(7-1", b"+", b"COUNT", 2)
    with pytest.raises(ValueError):
        stream_read(key, 2, False)


def test_push_options() -> None:
    options = PushOptions(BatchRoute("listed", ["a", "b"]), ack=True, offsets="end", max_message_size=10)
    assert options.batch and options.ack and options.offsets == "end" and options.max_message_size == 10
    assert not PushOptions(BatchRoute("single", ["a"])).batch
    with pytest.raises(ValueError):
        PushOptions(BatchRoute("single", ["a"]), offsets="middle")  # type: ignore[arg-type]


def test_pull_options_refuse_what_a_socket_cannot_do() -> None:
    keys = [StreamKey("a"), StreamKey("b")]
    options = PullOptions(keys, [("id", 1, 2), ("now", 0, 0)], count=3, latest=False)
    assert (options.count, options.latest, options.cursors[0]) == (3, False, ("id", 1, 2))
    with pytest.raises(ValueError, match="one cursor per stream"):
        PullOptions(keys, [("now", 0, 0)])
    with pytest.raises(ValueError, match="one cursor per stream"):
        PullOptions([], [])
    with pytest.raises(ValueError, match="count"):
        PullOptions(keys[:1], [("now", 0, 0)], count=0)
    with pytest.raises(ValueError, match="cursor"):
        PullOptions(keys[:1], [("later", 0, 0)])  # type: ignore[list-item]


def test_one_node_serves_every_key_until_slots_are_assigned() -> None:
    shards = Shards(2)
    keys = [b"a", b"b", b"{user1}x", b"{user1}y", b"zz"]
    assert shards.group_by_node(keys) == {0: [0, 1, 2, 3, 4]}
    shards.assign(8192, 16383, 1)
    groups = shards.group_by_node(keys)
    for node, indexes in groups.items():
        assert all((key_slot(keys[i]) >= 8192) == (node == 1) for i in indexes)
    assert any(2 in indexes and 3 in indexes for indexes in groups.values())  # hash tags stay together
    assert shards.pipe_for_key(b"a") is None and shards.reader_for_key(b"a") is None  # nothing connected


@pytest.mark.parametrize(
    ("first", "last", "node"), [(-1, 5, 0), (5, 4, 0), (0, 16384, 0), (0, 1, 2), (0, 1, -1)]
)
def test_slots_and_nodes_out_of_range_are_refused(first: int, last: int, node: int) -> None:
    with pytest.raises(ValueError):
        Shards(2).assign(first, last, node)


def test_a_shard_map_needs_a_node() -> None:
    with pytest.raises(ValueError):
        Shards(0)


def test_closes_are_counted_by_code() -> None:
    counters = Counters()
    for code in (1000, 1008, 1008, 1015, 4000, 999):
        counters.record_close(code)
    assert counters.snapshot()["closes"] == {1000: 1, 1008: 2, 1015: 1, 0: 2}
