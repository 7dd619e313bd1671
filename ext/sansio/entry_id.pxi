# Redis stream entry ids, "<ms>-<seq>" with two uint64_t, and the forms a
# client may ask XADD for: read and written here and nowhere else.
#
# Uses: common.pxi, sansio/decimal.pxi

cdef enum:
    # "ms-seq" with two uint64_t values.
    MAX_ENTRY_ID_BYTES = 2 * MAX_DECIMAL_DIGITS + 1

cdef enum EntryIdForm:
    ID_INVALID = 0
    ID_TOO_LARGE = 1   # digits beyond uint64_t
    ID_ANY = 2         # "*": Redis picks the whole id
    ID_MS = 3          # "ms"
    ID_MS_ANY_SEQ = 4  # "ms-*": Redis picks the sequence
    ID_EXACT = 5       # "ms-seq"

cdef dict _FORM_NAMES = {ID_ANY: "*", ID_MS: "ms", ID_MS_ANY_SEQ: "ms-*", ID_EXACT: "ms-seq"}


cdef struct EntryId:
    # An id to store an entry under: form is ID_ANY, ID_MS_ANY_SEQ or ID_EXACT.
    uint64_t ms
    uint64_t seq
    uint8_t form


cdef EntryIdForm read_entry_id(const unsigned char* text, Py_ssize_t length, uint64_t* ms,
                               uint64_t* seq) noexcept nogil:
    """Which form ``text[:length]`` has; ``ms`` and ``seq`` are set as far as it names them."""
    cdef Py_ssize_t i = 0
    cdef int read_ms, read_seq = 1
    cdef EntryIdForm form
    ms[0] = 0
    seq[0] = 0
    if length == 1 and text[0] == c'*':
        return ID_ANY
    read_ms = read_decimal(text, length, &i, ms)
    if read_ms == 0:
        return ID_INVALID
    if i == length:
        form = ID_MS
    elif text[i] != c'-':
        return ID_INVALID
    elif i + 2 == length and text[i + 1] == c'*':
        form = ID_MS_ANY_SEQ
    else:
        i += 1
        read_seq = read_decimal(text, length, &i, seq)
        if read_seq == 0 or i != length:
            return ID_INVALID
        form = ID_EXACT
    # Well formed, but a number beyond uint64_t: out of range rather than malformed.
    return ID_TOO_LARGE if read_ms < 0 or read_seq < 0 else form


cdef inline bint id_less(uint64_t ams, uint64_t aseq, uint64_t bms, uint64_t bseq) noexcept nogil:
    return ams < bms or (ams == bms and aseq < bseq)


cdef inline char* write_entry_id(char* out, uint64_t ms, uint64_t seq) noexcept nogil:
    """Write "ms-seq" at ``out`` (MAX_ENTRY_ID_BYTES of room); return the end."""
    out = write_decimal(out, ms)
    out[0] = c'-'
    return write_decimal(out + 1, seq)


cdef Py_ssize_t write_xadd_id(const EntryId* entry_id, char* out) noexcept nogil:
    """Write the id XADD is given: "*", "ms-*" or "ms-seq"; return its length."""
    cdef char* end
    if entry_id.form == ID_ANY:
        out[0] = c'*'
        return 1
    if entry_id.form == ID_MS_ANY_SEQ:
        end = write_decimal(out, entry_id.ms)
        end[0] = c'-'
        end[1] = c'*'
        return end + 2 - out
    return write_entry_id(out, entry_id.ms, entry_id.seq) - out


cdef bytes entry_id_bytes(uint64_t ms, uint64_t seq):
    cdef char text[MAX_ENTRY_ID_BYTES]
    return PyBytes_FromStringAndSize(text, write_entry_id(text, ms, seq) - text)


cdef EntryIdForm _read_python_id(object text, uint64_t* ms, uint64_t* seq) except *:
    cdef bytes encoded = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    return read_entry_id(<const unsigned char*>PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded),
                         ms, seq)


def entry_id_form(text):
    """``(form, ms, seq)`` of an id a client wrote: form is "*", "ms", "ms-*" or
    "ms-seq". Raises OverflowError for numbers beyond uint64_t, ValueError otherwise."""
    cdef uint64_t ms, seq
    cdef EntryIdForm form = _read_python_id(text, &ms, &seq)
    if form == ID_TOO_LARGE:
        raise OverflowError(f"entry id {text!r} is out of range")
    if form == ID_INVALID:
        raise ValueError(f"{text!r} is not an entry id")
    return _FORM_NAMES[form], ms, seq


def parse_entry_id(text):
    """``(ms, seq)`` of an id as Redis writes it, "<ms>-<seq>" (str or bytes)."""
    cdef uint64_t ms, seq
    if _read_python_id(text, &ms, &seq) != ID_EXACT:
        raise ValueError(f"{text!r} is not an entry id <ms>-<seq>")
    return ms, seq
