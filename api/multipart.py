"""multipart/form-data bodies held in memory, split into parts without copying.

Starlette's form parser spools every part into a temporary file object; at
the POST /data target (10 parts of 1 KiB per request) that was 38% of the
engine's time, so uploads are split here with bytes.find over the body.
Header parameters are read with python-multipart's parse_options_header,
the library Starlette uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.multipart import parse_options_header

_CRLF = b"\r\n"
_HEADERS_END = b"\r\n\r\n"


class MultipartError(ValueError):
    """A body that is not well-formed multipart/form-data; str() says where."""


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    data: memoryview


def boundary_of(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise MultipartError("expected a multipart/form-data body")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MultipartError("multipart/form-data needs a boundary of 1 to 200 characters")
    return boundary


def split_parts(body: bytes, boundary: bytes) -> list[Part]:
    """Every part of ``body`` in order; ``data`` are views into ``body``."""
    view = memoryview(body)
    delimiter = b"--" + boundary
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        # A preamble before the first delimiter is allowed and ignored.
        first = body.find(_CRLF + delimiter)
        if first < 0:
            raise MultipartError("no multipart boundary in the body")
        position = first + 2 + len(delimiter)
    separator = _CRLF + delimiter
    parts: list[Part] = []
    while True:
        if body.startswith(b"--", position):
            return parts  # the close delimiter; an epilogue after it is ignored
        line_end = body.find(_CRLF, position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MultipartError("malformed multipart boundary line")
        headers_start = line_end + 2
        headers_end = body.find(_HEADERS_END, headers_start - 2)
        if headers_end < 0:
            raise MultipartError(f"part {len(parts) + 1} has no end of headers")
        data_start = headers_end + 4
        data_end = body.find(separator, data_start)
        if data_end < 0:
            raise MultipartError(f"part {len(parts) + 1} is not terminated by the boundary")
        name, filename = _disposition(body[headers_start:headers_end], len(parts) + 1)
        parts.append(Part(name, filename, view[data_start:data_end]))
        position = data_end + len(separator)


def _disposition(headers: bytes, number: int) -> tuple[str, str | None]:
    for line in headers.split(_CRLF):
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == b"content-disposition":
            # Only SP and HTAB are whitespace around a field value (RFC 9110 5.5);
            # a form feed or vertical tab is part of the value.
            kind, params = parse_options_header(value.strip(b" \t"))
            if kind != b"form-data" or b"name" not in params:
                raise MultipartError(f"part {number}: Content-Disposition must be form-data with a name")
            filename = params.get(b"filename")
            try:
                return (
                    params[b"name"].decode("utf-8"),
                    None if filename is None else filename.decode("utf-8"),
                )
            except UnicodeDecodeError:
                raise MultipartError(f"part {number}: name or filename is not UTF-8") from None
    raise MultipartError(f"part {number} has no Content-Disposition header")
