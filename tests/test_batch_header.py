"""Batch header parser: every error path by name, the accessors, and
hypothesis runs where the Cython parser must agree with the json.loads
reference on valid headers (and give the intended entries) and on hostile
input (random bytes, mutated headers, deep nesting, huge numbers, floats,
bools, NaN, mixed forms) -- same entries, or both refuse with the same code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine._core import BatchHeader, BatchHeaderError, BatchRoute, InvalidStreamId, parse_batch_header
from tests.reference_batch_header import Entry, Rejected, reference_parse

ROUTES: list[tuple[str, tuple[str, ...]]] = [
    ("single", ("s",)),
    ("any", ()),
    ("listed", ("a", "b")),
    ("listed", ("a", "é", "\U0001f600", "c")),
]


def parse(
    header: str | bytes,
    blob_len: int,
    offsets: str = "auto",
    route: str = "single",
    sids: Sequence[str] | None = None,
) -> BatchHeader:
    if sids is None:
        sids = ("s",) if route == "single" else ()
    return parse_batch_header(header, blob_len, offsets, route, sids)  # type: ignore[arg-type]


def entries(*args: object, **kwargs: object) -> list[Entry]:
    return parse(*args, **kwargs).entries()  # type: ignore[arg-type]


def refusal(header: str | bytes, blob_len: int, **kwargs: object) -> BatchHeaderError:
    with pytest.raises(BatchHeaderError) as caught:
        parse(header, blob_len, **kwargs)  # type: ignore[arg-type]
    error = caught.value
    assert len(str(error).encode()) <= 123  # a close reason fits a close frame
    return error


# -- accepted forms -----------------------------------------------------------


def test_start_offsets_readme_form() -> None:
    # The README form: the last entry runs to the end of the blob.
    assert entries('[["s",0],["s",100]]', 150) == [(b"s", b"*", 0, 100), (b"s", b"*", 100, 150)]


def test_end_offsets_ptgctl_form() -> None:
    assert entries("[7, 14, 20]", 20) == [(b"s", b"*", 0, 7), (b"s", b"*", 7, 14), (b"s", b"*", 14, 20)]


def test_auto_prefers_end_when_last_equals_blob_length() -> None:
    header = parse("[0, 10]", 10)
    assert header.offsets == "end"
    assert header.entries() == [(b"s", b"*", 0, 0), (b"s", b"*", 0, 10)]
    assert parse("[0, 10]", 10, offsets="start").entries() == [(b"s", b"*", 0, 10), (b"s", b"*", 10, 10)]


def test_one_item_zero_is_start() -> None:
    header = parse("[0]", 5)
    assert header.offsets == "start"
    assert header.entries() == [(b"s", b"*", 0, 5)]
    assert entries("[0]", 0) == [(b"s", b"*", 0, 0)]


def test_comma_line() -> None:
    assert entries("0,7,14", 20) == [(b"s", b"*", 0, 7), (b"s", b"*", 7, 14), (b"s", b"*", 14, 20)]
    assert entries(" 0 ,\t7,14 \r\n", 14) == [(b"s", b"*", 0, 0), (b"s", b"*", 0, 7), (b"s", b"*", 7, 14)]
    assert entries("0", 3) == [(b"s", b"*", 0, 3)]
    assert entries(b"-0,3", 3, offsets="end") == [(b"s", b"*", 0, 0), (b"s", b"*", 0, 3)]


def test_entry_id_forms() -> None:
    header = '[["s","5-1",0],["s","6-*",1],["s","7",2],["s",8,3],["s",null,4],["s","*",5],["s","007-0010",6]]'
    assert [entry[1] for entry in entries(header, 9)] == [
        b"5-1",
        b"6-*",
        b"7-*",
        b"8-*",
        b"*",
        b"*",
        b"7-10",
    ]
    top = 2**64 - 1
    assert entries(f'[["s","{top}-{top}",0],["s",{top},1]]', 1)[0][1] == b"%d-%d" % (top, top)
    assert entries('[["s","0-1",0],["s",0,1],["s","\\u0031-\\u002a",1]]', 1)[1:] == [
        (b"s", b"0-*", 0, 1),
        (b"s", b"1-*", 1, 1),
    ]


def test_single_route_ignores_header_stream_ids() -> None:
    assert entries('[["x+y",0],["\\ud800",1]]', 2, sids=["cam"]) == [
        (b"cam", b"*", 0, 1),
        (b"cam", b"*", 1, 2),
    ]


def test_any_route_takes_header_stream_ids() -> None:
    assert entries('[["a",0],["b",2],["a",3]]', 5, route="any") == [
        (b"a", b"*", 0, 2),
        (b"b", b"*", 2, 3),
        (b"a", b"*", 3, 5),
    ]


def test_listed_route_plain_offsets_go_to_listed_streams_in_order() -> None:
    assert entries("[0,1,2]", 3, route="listed", sids=["a", "b", "c"]) == [
        (b"a", b"*", 0, 1),
        (b"b", b"*", 1, 2),
        (b"c", b"*", 2, 3),
    ]


def test_string_escapes_are_decoded() -> None:
    header = r'[["\u00e9",0],["a\\b",1],["\"q\"",2],["\ud83d\ude00",3],["é",4]]'
    assert [entry[0] for entry in entries(header, 5, route="any")] == [
        "é".encode(),
        b"a\\b",
        b'"q"',
        "\U0001f600".encode(),
        "é".encode(),
    ]


def test_spellings_of_one_stream_share_a_key() -> None:
    header = parse('[["a",0],["\\u0061",1],["b",2],["\\u0061",3]]', 4, route="any")
    assert [header.key(i) for i in range(4)] == [b"a", b"a", b"b", b"a"]
    assert header.keys == (b"a", b"b")


def test_many_distinct_streams() -> None:
    # Past a few distinct spellings the parser switches to a dict lookup.
    sids = [f"stream-{i}" for i in range(40)]
    items = [[sids[(i * 7) % 40], i] for i in range(200)]
    header = parse(json.dumps(items), 200, route="any")
    assert [header.key(i) for i in range(200)] == [item[0].encode() for item in items]  # type: ignore[union-attr]


def test_inputs_as_str_bytes_and_buffers() -> None:
    text = '[["é",0],["é",1]]'
    expected = entries(text, 2, route="any")
    for form in (text.encode(), bytearray(text.encode()), memoryview(text.encode())):
        assert entries(form, 2, route="any") == expected


def test_accessors() -> None:
    header = parse('[["a","5-1",0],["b",null,4]]', 10, route="any")
    assert header.count == len(header) == 2
    assert (header.start(0), header.end(0), header.start(1), header.end(1)) == (0, 4, 4, 10)
    assert (header.key(1), header.entry_id(0), header.entry_id(1)) == (b"b", b"5-1", b"*")
    with pytest.raises(IndexError):
        header.start(2)
    with pytest.raises(IndexError):
        header.key(-1)


def test_batch_header_is_not_built_directly() -> None:
    with pytest.raises(TypeError):
        BatchHeader()


def test_one_route_parses_many_headers() -> None:
    route = BatchRoute("listed", ["a", "b"])
    assert route.parse("0,3", 5).entries() == [(b"a", b"*", 0, 3), (b"b", b"*", 3, 5)]
    assert route.parse(b'[["b",2]]', 2, "end").entries() == [(b"b", b"*", 0, 2)]
    with pytest.raises(BatchHeaderError):
        route.parse("[0]", 1)  # one entry, two listed streams
    assert route.parse(memoryview(b"[0,1]"), 1).entries() == [(b"a", b"*", 0, 0), (b"b", b"*", 0, 1)]


def test_route_validation() -> None:
    assert BatchRoute("listed", ["a", "é"]).keys == (b"a", "é".encode())
    assert BatchRoute("any").mode == "any"
    with pytest.raises(ValueError):
        BatchRoute("single", [])
    with pytest.raises(ValueError):
        BatchRoute("any", ["a"])
    with pytest.raises(ValueError):
        BatchRoute("listed", [])
    with pytest.raises(ValueError):
        BatchRoute("every", ["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidStreamId):
        BatchRoute("single", ["a/b"])
    with pytest.raises(ValueError):
        parse("[0]", 1, offsets="middle")
    with pytest.raises(ValueError):
        parse("[0]", -1)


# -- every refusal, by name ---------------------------------------------------


@pytest.mark.parametrize(
    ("header", "blob_len", "options", "reason"),
    [
        ("", 5, {}, "empty"),
        (" \n ", 5, {}, "empty"),
        ("[]", 5, {}, "no entries"),
        ("{}", 5, {}, "JSON list or a comma-separated"),
        ('"0"', 5, {}, "JSON list or a comma-separated"),
        ("[0,1", 5, {}, "ended where"),
        ("[0,]", 5, {}, "items must be"),
        ("[0 1]", 5, {}, "expected ',' or ']'"),
        ("[0]]", 5, {}, "nothing after"),
        ("[0] x", 5, {}, "nothing after"),
        ("[01]", 5, {}, "leading zeros"),
        ("[-]", 5, {}, "expected a digit"),
        ("[0,1.5]", 5, {}, "must be an integer"),
        ("[0,1e3]", 5000, {}, "must be an integer"),
        ("[0,true]", 5, {}, "items must be"),
        ("[0,null]", 5, {}, "items must be"),
        ('[0,"5"]', 5, {}, "items must be"),
        ("[NaN]", 5, {}, "items must be"),
        ("[0,[0]]", 5, {}, "stream id string"),
        ('[0,["s",1]]', 5, {}, "mixes item forms"),
        ('[["s",0],["s","*",1]]', 5, {}, "mixes item forms"),
        ('[["s"]]', 5, {}, "expected ',' after the stream id"),
        ('[["s",0,1,2]]', 5, {}, "2 or 3 values"),
        ('[["s",[0],1]]', 5, {}, "expected an entry id"),
        ('[["s",null]]', 5, {}, "last value of an item must be an offset"),
        ('[["s","*","0"]]', 5, {}, "last value of an item must be an offset"),
        ('[["s",0.5,0]]', 5, {}, "must be an integer"),
        ('[["s",-1,0]]', 5, {}, "timestamp outside"),
        ('[["s",18446744073709551616,0]]', 5, {}, "timestamp outside"),
        ('[["s","1-2-3",0]]', 5, {}, "entry id must be"),
        ('[["s","18446744073709551616",0]]', 5, {}, "entry id must be"),
        ('[["s"," 1",0]]', 5, {}, "entry id must be"),
        ('[["s","-1",0]]', 5, {}, "entry id must be"),
        ('[["s","0-0",0]]', 5, {}, "0-0"),
        ('[["s","\\x",0]]', 5, {}, "invalid escape"),
        ('[["s\\u00g0",0]]', 5, {}, "4 hex digits"),
        ('[["s', 5, {}, "unterminated string"),
        ('[["s\\', 5, {}, "unterminated string"),
        ('[["s\n",0]]', 5, {}, "control character"),
        (b'[["s\xff",0]]', 5, {}, "not valid UTF-8"),
        (b"[0]\xff", 5, {}, "nothing after"),
        ("\ufeff[0]", 5, {}, "JSON list or a comma-separated"),
        ("\ud800", 5, {}, "not valid Unicode"),
        ("[-1]", 5, {}, "outside the blob"),
        ("[0,6]", 5, {}, "outside the blob"),
        ("[0,1" + "0" * 30 + "]", 5, {}, "outside the blob"),
        ("[0,3,2]", 5, {}, "below the previous offset"),
        ("[1,3]", 5, {}, "neither start"),
        ("[1,5]", 5, {"offsets": "start"}, "must begin at 0"),
        ("[0,3]", 5, {"offsets": "end"}, "not the blob length"),
        ("0,7,", 9, {}, "an integer offset"),
        ("0,,7", 9, {}, "an integer offset"),
        ("0 7", 9, {}, "',' between offsets"),
        ("0,7.5", 9, {}, "must be an integer"),
        ("[0,1]", 2, {"route": "any"}, "needs a stream id"),
        ("0,1", 2, {"route": "any"}, "needs a stream id"),
        ("[0,1,2]", 3, {"route": "listed", "sids": ["a", "b"]}, "3 entries but the path lists 2"),
        ('[["a+b",0]]', 1, {"route": "any"}, "forbidden character"),
        ('[["",0]]', 1, {"route": "any"}, "empty"),
        ('[["XMETA:a",0]]', 1, {"route": "any"}, "reserved prefix"),
        ('[["\\/",0]]', 1, {"route": "any"}, "forbidden character"),
        ('[["\\ud800",0]]', 1, {"route": "any"}, "not valid Unicode"),
        ('[["' + "x" * 257 + '",0]]', 1, {"route": "any"}, "more than 256"),
    ],
)
def test_malformed_input_closes_1007(
    header: str | bytes, blob_len: int, options: dict[str, object], reason: str
) -> None:
    error = refusal(header, blob_len, **options)
    assert error.close_code == 1007
    assert reason in str(error)


@pytest.mark.parametrize("byte", range(0x20))
def test_raw_control_characters_in_strings_refused(byte: int) -> None:
    # JSON forbids U+0000..U+001F raw inside strings, whatever the route.
    header = b'[["s%c",0]]' % byte
    assert "control character" in str(refusal(header, 1))
    assert "control character" in str(refusal(header, 1, route="any"))


def test_raw_del_is_json_but_not_a_stream_id() -> None:
    assert entries(b'[["s\x7f",0]]', 1) == [(b"s", b"*", 0, 1)]
    assert "forbidden character" in str(refusal(b'[["s\x7f",0]]', 1, route="any"))


def test_unlisted_stream_closes_1008() -> None:
    error = refusal('[["a",0],["c",1]]', 2, route="listed", sids=["a", "b"])
    assert error.close_code == 1008
    assert "'c' is not one of the path's streams" in str(error)


def test_malformed_input_wins_over_unlisted_stream() -> None:
    assert refusal('[["c",0],["a",3]]', 2, route="listed", sids=["a"]).close_code == 1007
    assert refusal('[["c",0],["a+",1]]', 2, route="listed", sids=["a"]).close_code == 1007


def test_long_reasons_are_cut_for_the_close_frame() -> None:
    error = refusal('[["' + "é" * 200 + '+",0]]', 1, route="any")
    assert len(str(error).encode()) <= 123
    assert str(error).endswith("...")
    assert BatchHeaderError("x" * 500).reason.endswith("...")


def test_deep_nesting_is_refused_without_recursion() -> None:
    assert refusal("[" * 100_000 + "]" * 100_000, 5).close_code == 1007


# -- agreement with the reference ---------------------------------------------


def outcome(
    header: str | bytes, blob_len: int, offsets: str, route: tuple[str, tuple[str, ...]]
) -> tuple[str, object]:
    try:
        result = parse_batch_header(header, blob_len, offsets, route[0], route[1])  # type: ignore[arg-type]
    except BatchHeaderError as error:
        assert len(str(error).encode()) <= 123  # a close reason fits a close frame
        return ("refused", error.close_code)
    return ("accepted", result.entries())


def reference_outcome(
    header: str | bytes, blob_len: int, offsets: str, route: tuple[str, tuple[str, ...]]
) -> tuple[str, object]:
    try:
        return ("accepted", reference_parse(header, blob_len, offsets, route[0], route[1]))
    except Rejected as error:
        return ("refused", error.close_code)


def assert_agree(
    header: str | bytes, blob_len: int, offsets: str, route: tuple[str, tuple[str, ...]]
) -> tuple[str, object]:
    ours = outcome(header, blob_len, offsets, route)
    assert ours == reference_outcome(header, blob_len, offsets, route), header
    return ours


@dataclass
class ValidHeader:
    text: str
    blob_len: int
    offsets: str  # "start" or "end": how the text was written
    route: tuple[str, tuple[str, ...]]
    expected: list[Entry]


SID_POOL = ["a", "b", "cam-1", "é", "a\\b", 'q"q', "\U0001f600", "x" * 256, "\x7fno", "tab\there"]
WHITESPACE = st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n  "])


@st.composite
def json_string(draw: st.DrawFn, text: str) -> str:
    """``text`` as a JSON string, each character written raw or escaped at random."""
    out = ['"']
    for char in text:
        short = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
        must_escape = char in '"\\' or ord(char) < 0x20
        style = (
            draw(st.sampled_from(["raw", "u", "short"]))
            if not must_escape
            else draw(st.sampled_from(["u", "short"]))
        )
        if style == "raw" and not must_escape:
            out.append(char)
        elif style == "short" and char in short:
            out.append(short[char])
        elif char == "/" and style == "short":
            out.append("\\/")
        elif ord(char) > 0xFFFF:
            code = ord(char) - 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04X}")
        else:
            out.append(f"\\u{ord(char):04x}")
    out.append('"')
    return "".join(out)


@st.composite
def entry_ids(draw: st.DrawFn) -> tuple[str, bytes]:
    """A TS as JSON text, and the entry id it means."""
    ms = draw(st.one_of(st.integers(0, 2000), st.just(2**64 - 1), st.integers(0, 2**64 - 1)))
    seq = draw(st.integers(0, 2**64 - 1))
    zeros = "0" * draw(st.integers(0, 2))
    choice = draw(st.sampled_from(["null", "star", "int", "ms", "ms-*", "ms-seq"]))
    if choice == "null":
        return "null", b"*"
    if choice == "star":
        return draw(json_string("*")), b"*"
    if choice == "int":
        return str(ms), b"%d-*" % ms
    if choice == "ms":
        return draw(json_string(f"{zeros}{ms}")), b"%d-*" % ms
    if choice == "ms-*":
        return draw(json_string(f"{ms}-*")), b"%d-*" % ms
    assume((ms, seq) != (0, 0))
    return draw(json_string(f"{ms}-{zeros}{seq}")), b"%d-%d" % (ms, seq)


@st.composite
def valid_headers(draw: st.DrawFn) -> ValidHeader:
    route = draw(st.sampled_from(ROUTES))
    mode, listed = route
    forms = ["sid_off", "sid_ts_off"] if mode == "any" else ["plain", "comma", "sid_off", "sid_ts_off"]
    form = draw(st.sampled_from(forms))
    plain = form in ("plain", "comma")
    count = len(listed) if mode == "listed" and plain else draw(st.integers(1, 12))
    sizes = draw(st.lists(st.integers(0, 40), min_size=count, max_size=count))
    blob_len = sum(sizes)
    written = draw(st.sampled_from(["start", "end"]))
    cumulative = [sum(sizes[: i + 1]) for i in range(count)]
    offsets = [0, *cumulative[:-1]] if written == "start" else cumulative
    bounds = list(zip([0, *cumulative[:-1]], cumulative, strict=True))

    pool = list(listed) if mode == "listed" else SID_POOL
    sids = [draw(st.sampled_from(pool)) for _ in range(count)]
    ids = [draw(entry_ids()) if form == "sid_ts_off" else ("", b"*") for _ in range(count)]

    def ws() -> str:
        return draw(WHITESPACE)

    def number(value: int) -> str:
        return draw(st.sampled_from(["-0", "0"])) if value == 0 else str(value)

    if form == "comma":
        text = ws() + f"{ws()},{ws()}".join(number(offset) for offset in offsets) + ws()
    else:
        items = []
        for i, offset in enumerate(offsets):
            if form == "plain":
                items.append(ws() + number(offset) + ws())
                continue
            values = [draw(json_string(sids[i]))]
            if form == "sid_ts_off":
                values.append(ids[i][0])
            values.append(number(offset))
            items.append(ws() + "[" + ",".join(ws() + value + ws() for value in values) + "]" + ws())
        text = ws() + "[" + ",".join(items) + "]" + ws()

    if mode == "single":
        keys = [listed[0].encode()] * count
    elif form in ("plain", "comma"):
        keys = [sid.encode() for sid in listed]
    else:
        keys = [sid.encode() for sid in sids]
    expected = [
        (key, entry_id, start, end)
        for key, (_, entry_id), (start, end) in zip(keys, ids, bounds, strict=True)
    ]
    return ValidHeader(text, blob_len, written, route, expected)


def header_bytes_or_text(header: ValidHeader, as_bytes: bool) -> str | bytes:
    return header.text.encode() if as_bytes else header.text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_headers(), st.booleans())
def test_valid_headers_give_the_intended_entries(header: ValidHeader, as_bytes: bool) -> None:
    sids_are_valid = all(
        key.decode() != "tab\there" and not key.startswith(b"\x7f") for key, *_ in header.expected
    )
    result = assert_agree(
        header_bytes_or_text(header, as_bytes), header.blob_len, header.offsets, header.route
    )
    if header.route[0] == "single" or sids_are_valid:
        assert result == ("accepted", header.expected)
    else:
        assert result == ("refused", 1007)
    # auto reads the offsets its own way; it must still agree with the reference.
    assert_agree(header.text, header.blob_len, "auto", header.route)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_headers())
def test_every_prefix_agrees(header: ValidHeader) -> None:
    # A header is one whole message, never streamed: instead of feeding it a
    # byte at a time, every truncation of it must be judged as the reference does.
    data = header.text.encode()
    for end in range(len(data)):
        assert_agree(data[:end], header.blob_len, header.offsets, header.route)


INTERESTING_BYTES = [
    *b'[]{},:"\\-0123456789 \t\nnulltruefalse.eE+*u',
    *(0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xA9, 0xED, 0xFF),
]


def mutate(draw: st.DrawFn, text: str) -> bytes:
    """A few random edits: insert, delete or replace a byte, or duplicate a slice."""
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        byte = draw(st.sampled_from(INTERESTING_BYTES))
        if action == "insert":
            data.insert(position, byte)
        elif data and action == "delete":
            del data[min(position, len(data) - 1)]
        elif data and action == "replace":
            data[min(position, len(data) - 1)] = byte
        else:
            end = draw(st.integers(position, min(len(data), position + 12)))
            data[position:position] = data[position:end]
    return bytes(data)


@st.composite
def mutated_headers(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(valid_headers()).text)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 50),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["*", "5-1", "7", "a", "b", "é", "1-*", "0-0", "", "a+b"]),
    ),
    lambda children: st.lists(children, max_size=4),
    max_leaves=20,
)


@st.composite
def nested(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 3000))
    inner = draw(st.sampled_from(["0", '"a",0', "", "null"]))
    closing = depth - draw(st.integers(0, 2))
    return "[" * depth + inner + "]" * closing


hostile = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=60),
    st.text(alphabet='[]0123456789,-" \nnul.eE\\uabcdtrf*', max_size=60),
    st.lists(st.sampled_from(INTERESTING_BYTES), max_size=60).map(bytes),
    mutated_headers(),
    json_values.map(json.dumps),
    st.lists(json_values, min_size=1, max_size=6).map(json.dumps),
    nested(),
    st.integers(0, 2**200).map(lambda n: f"[0,{n}]"),
    st.lists(st.integers(-3, 2**66), min_size=1, max_size=6).map(lambda xs: ",".join(map(str, xs))),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hostile,
    st.sampled_from([0, 1, 5, 7, 40, 100]),
    st.sampled_from(["auto", "start", "end"]),
    st.sampled_from(ROUTES),
)
def test_hostile_input_agrees_with_reference(
    header: str | bytes, blob_len: int, offsets: str, route: tuple[str, tuple[str, ...]]
) -> None:
    assert_agree(header, blob_len, offsets, route)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_headers(), st.data())
def test_mutated_headers_agree_with_reference(header: ValidHeader, data: st.DataObject) -> None:
    mutated = mutate(data.draw, header.text)
    assert_agree(mutated, header.blob_len, header.offsets, header.route)
    assert_agree(mutated, header.blob_len, "auto", header.route)
