"""The in-memory multipart splitter against python-multipart (the library Starlette
uses) as the reference, on generated and hostile bodies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser, parse_options_header

from api.multipart import MultipartError, boundary_of, split_parts

BOUNDARY = b"b0undary-xyz"


def reference(body: bytes, boundary: bytes) -> list[tuple[str, str | None, bytes]] | None:
    """python-multipart's reading of the body, or None when it refuses it."""
    parts: list[tuple[str, str | None, bytes]] = []
    state: dict[str, object] = {}

    def on_part_begin() -> None:
        state.update(headers={}, data=bytearray(), field=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] = bytes(state["field"]) + data[start:end]  # type: ignore[arg-type]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        key = bytes(state["field"]).lower()  # type: ignore[arg-type]
        headers[key] = headers.get(key, b"") + data[start:end]

    def on_header_end() -> None:
        state["field"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]  # type: ignore[operator]

    def on_part_end() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        filename = params.get(b"filename")
        parts.append(
            (
                params.get(b"name", b"").decode(),
                None if filename is None else filename.decode(),
                bytes(state["data"]),
            )
        )  # type: ignore[arg-type]

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception:
        return None
    return parts


def encode(parts: list[tuple[str, str | None, bytes]], boundary: bytes = BOUNDARY) -> bytes:
    out = bytearray()
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode()
        out += b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    return bytes(out + b"--" + boundary + b"--\r\n")


names = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='"\\;'),
    min_size=1,
    max_size=12,
)
payloads = st.binary(max_size=300).filter(lambda data: BOUNDARY not in data)
part_lists = st.lists(st.tuples(names, st.one_of(st.none(), names), payloads), max_size=6)


def ours(body: bytes, boundary: bytes = BOUNDARY) -> list[tuple[str, str | None, bytes]]:
    return [(part.name, part.filename, bytes(part.data)) for part in split_parts(body, boundary)]


@given(part_lists)
def test_agrees_with_python_multipart_on_well_formed_bodies(
    parts: list[tuple[str, str | None, bytes]],
) -> None:
    body = encode(parts)
    assert ours(body) == reference(body, BOUNDARY) == parts


@settings(max_examples=300)
@given(part_lists, st.data())
def test_hostile_bodies_never_crash_and_accepted_ones_agree(
    parts: list[tuple[str, str | None, bytes]], data: st.DataObject
) -> None:
    body = bytearray(encode(parts))
    for _ in range(data.draw(st.integers(1, 4))):
        if not body:
            break
        position = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["cut", "flip", "insert"]))
        if action == "cut":
            del body[position:]
        elif action == "flip":
            body[position] ^= data.draw(st.integers(1, 255))
        else:
            body[position:position] = data.draw(
                st.sampled_from([b"\r\n", b"--", BOUNDARY, b"\r\n\r\n", b"x"])
            )
    try:
        mine = ours(bytes(body))
    except MultipartError:
        return
    theirs = reference(bytes(body), BOUNDARY)
    if theirs is not None and all(name for name, _, _ in theirs):
        assert mine == theirs


def test_only_spaces_and_tabs_are_trimmed_around_the_disposition() -> None:
    """Found by the hostile-body test: a value ending in a form feed or a vertical
    tab keeps it (RFC 9110 whitespace is SP and HTAB only), as python-multipart does."""
    for value, filename in [
        (b'form-data; name="a"; filename="00\x0c', '"00\x0c'),
        (b'form-data; name="a"; filename=00 \x0b', "00 \x0b"),
        (b' \tform-data; name="a"; filename="x"\t ', "x"),
    ]:
        body = b"--" + BOUNDARY + b"\r\nContent-Disposition: " + value + b"\r\n\r\nd\r\n--" + BOUNDARY + b"--"
        assert ours(body) == reference(body, BOUNDARY) == [("a", filename, b"d")]


def test_a_preamble_and_an_epilogue_are_ignored() -> None:
    body = b"preamble\r\n" + encode([("a", "f", b"data")]) + b"epilogue"
    assert ours(body) == [("a", "f", b"data")]


def test_errors_say_what_is_wrong() -> None:
    cases = {
        b"no boundary at all": "no multipart boundary",
        b"--"
        + BOUNDARY
        + b"\r\nContent-Disposition: form-data; name=a\r\n\r\nunterminated": "not terminated",
        b"--" + BOUNDARY + b"\r\nX-Other: 1\r\n\r\ndata\r\n--" + BOUNDARY + b"--": "no Content-Disposition",
        b"--"
        + BOUNDARY
        + b"\r\nContent-Disposition: attachment\r\n\r\nd\r\n--"
        + BOUNDARY
        + b"--": "form-data",
        b"--" + BOUNDARY + b"junk\r\n": "boundary line",
    }
    for body, reason in cases.items():
        try:
            split_parts(body, BOUNDARY)
        except MultipartError as error:
            assert reason in str(error), (body, error)
        else:
            raise AssertionError(f"accepted {body!r}")


def test_boundary_comes_from_the_content_type() -> None:
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"
    for content_type in ("application/json", "multipart/form-data", "multipart/form-data; boundary="):
        try:
            boundary_of(content_type)
        except MultipartError:
            continue
        raise AssertionError(content_type)
