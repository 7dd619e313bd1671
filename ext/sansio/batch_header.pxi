# Batch header parser for the push protocol's batch mode (PROTOCOL.md,
# "WebSocket push"). Sans-I/O: it turns one header text message and the
# length of the binary blob that follows into entry boundaries, stream keys
# and entry ids held in C arrays, so the push session can frame one XADD per
# entry without a Python object per entry.
#
# Lifetime: nothing in a BatchHeader points into the header text, which
# picows reuses once the frame callback returns.
#
# Uses: common.pxi, sansio/decimal.pxi, sansio/entry_id.pxi, sansio/stream_id.pxi,
#       sansio/header_scanner.pxi

cdef enum:
    # Distinct stream id spellings looked up by a linear scan; past this
    # many, a dict keeps a header of many different streams linear in size.
    LINEAR_SPELLING_LOOKUPS = 8

cdef enum OffsetsMode:
    OFFSETS_AUTO = 0
    OFFSETS_START = 1
    OFFSETS_END = 2

cdef enum RouteMode:
    ROUTE_SINGLE = 0   # one sid in the path: header stream ids are ignored
    ROUTE_ANY = 1      # "*": every item names its stream
    ROUTE_LISTED = 2   # "a+b": items name listed streams, or plain offsets map to them in order

cdef enum ItemForm:
    FORM_NONE = 0
    FORM_OFFSET = 1          # OFFSET
    FORM_SID_OFFSET = 2      # [SID, OFFSET]
    FORM_SID_TS_OFFSET = 3   # [SID, TS, OFFSET]

cdef dict _OFFSETS_MODES = {"auto": OFFSETS_AUTO, "start": OFFSETS_START, "end": OFFSETS_END}
cdef dict _ROUTE_MODES = {"single": ROUTE_SINGLE, "any": ROUTE_ANY, "listed": ROUTE_LISTED}


cdef OffsetsMode offsets_mode_from_name(str name) except *:
    """The OffsetsMode of the ``offsets`` query value ("auto", "start", "end")."""
    try:
        return _OFFSETS_MODES[name]
    except KeyError:
        raise ValueError(f"offsets must be 'auto', 'start' or 'end', not {name!r}") from None


@cython.final
cdef class BatchRoute:
    """Where a socket's batch entries may go; made once per connection.

    ``mode`` is "single" (one stream, header stream ids ignored), "any"
    (the path is ``*``) or "listed" (the path is ``a+b``); ``sids`` are the
    path's stream ids.
    """

    cdef RouteMode _mode
    cdef tuple _keys       # UTF-8 keys of the path's streams, in path order
    cdef frozenset _allowed

    def __init__(self, str mode, sids=()):
        cdef list keys = [check_stream_id(sid) for sid in sids]
        try:
            self._mode = _ROUTE_MODES[mode]
        except KeyError:
            raise ValueError(f"route mode must be 'single', 'any' or 'listed', not {mode!r}") from None
        if self._mode == ROUTE_SINGLE and len(keys) != 1:
            raise ValueError("a 'single' route takes exactly one stream id")
        if self._mode == ROUTE_ANY and keys:
            raise ValueError("an 'any' route takes no stream ids")
        if self._mode == ROUTE_LISTED and not keys:
            raise ValueError("a 'listed' route takes at least one stream id")
        self._keys = tuple(keys)
        self._allowed = frozenset(keys)

    def parse(self, header, Py_ssize_t blob_len, str offsets="auto"):
        """Parse a batch header (``str`` or UTF-8 bytes) for a blob of ``blob_len`` bytes.

        Raises BatchHeaderError (with ``close_code``) for a header to refuse.
        """
        cdef OffsetsMode mode = offsets_mode_from_name(offsets)
        cdef const char* text
        cdef Py_ssize_t length
        cdef Py_buffer view
        if isinstance(header, str):
            try:
                text = PyUnicode_AsUTF8AndSize(header, &length)
            except UnicodeEncodeError:
                raise BatchHeaderError("batch header is not valid Unicode text") from None
            return parse_batch_header_c(text, length, blob_len, mode, self)
        if type(header) is bytes:
            return parse_batch_header_c(PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header),
                                        blob_len, mode, self)
        PyObject_GetBuffer(header, &view, PyBUF_SIMPLE)
        try:
            return parse_batch_header_c(<const char*>view.buf, view.len, blob_len, mode, self)
        finally:
            PyBuffer_Release(&view)

    @property
    def mode(self):
        return ("single", "any", "listed")[self._mode]

    @property
    def keys(self):
        """The path's stream keys (UTF-8 bytes), in path order."""
        return self._keys


@cython.final
@cython.freelist(4)
cdef class _StreamIdSpellings:
    """The distinct raw spellings of header stream ids, during one parse.

    Entries refer to a spelling by index; each spelling is decoded and
    checked once, however many entries use it.
    """

    cdef ScannedString* spans
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef Py_ssize_t last_hit
    cdef dict by_raw_text   # raw spelling -> index, once there are many

    def __dealloc__(self):
        free(self.spans)

    cdef int32_t intern(self, const unsigned char* start, ScannedString* span) except -1:
        cdef Py_ssize_t i
        cdef object raw
        if self.count and self._same(start, span, self.last_hit):
            return <int32_t>self.last_hit
        if self.by_raw_text is None:
            for i in range(self.count):
                if self._same(start, span, i):
                    self.last_hit = i
                    return <int32_t>i
        else:
            raw = PyBytes_FromStringAndSize(<const char*>start + span.offset, span.length)
            found = self.by_raw_text.get(raw)
            if found is not None:
                self.last_hit = found
                return <int32_t>self.last_hit
            self.by_raw_text[raw] = self.count
        return self._add(start, span)

    cdef inline bint _same(self, const unsigned char* start, ScannedString* span,
                           Py_ssize_t i) noexcept:
        # memcmp, not a byte loop: ids often share a prefix ("cam-0", "cam-1"),
        # where the loop measured 10% slower on the 100-entry bench header.
        return (self.spans[i].length == span.length
                and memcmp(start + self.spans[i].offset, start + span.offset,
                           <size_t>span.length) == 0)

    cdef int32_t _add(self, const unsigned char* start, ScannedString* span) except -1:
        cdef Py_ssize_t i
        cdef ScannedString* grown
        if self.count == self.capacity:
            self.capacity = self.capacity * 2 if self.capacity else 4
            grown = <ScannedString*>realloc(self.spans, self.capacity * sizeof(ScannedString))
            if grown == NULL:
                raise MemoryError()
            self.spans = grown
        self.spans[self.count] = span[0]
        self.last_hit = self.count
        self.count += 1
        if self.by_raw_text is None and self.count > LINEAR_SPELLING_LOOKUPS:
            self.by_raw_text = {}
            for i in range(self.count):
                self.by_raw_text[PyBytes_FromStringAndSize(
                    <const char*>start + self.spans[i].offset, self.spans[i].length)] = i
        return <int32_t>self.last_hit


@cython.final
@cython.freelist(8)
cdef class BatchHeader:
    """One parsed batch header: for every entry, its byte range in the blob,
    its stream key and its entry id. Built by ``parse_batch_header``."""

    cdef readonly Py_ssize_t count
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _blob_length
    cdef ItemForm _form
    cdef bint _end_offsets
    cdef Py_ssize_t* _offsets      # as written in the header
    cdef int32_t* _key_indexes     # into _keys; NULL when the route decides alone
    cdef bint _has_key_indexes
    cdef bint _key_per_position    # listed route, plain offsets: entry i -> i-th stream
    cdef EntryId* _entry_ids       # NULL unless items carry a TS
    cdef list _keys                # distinct stream keys (UTF-8 bytes)

    def __init__(self):
        raise TypeError("BatchHeader objects come from parse_batch_header()")

    def __dealloc__(self):
        free(self._offsets)
        free(self._key_indexes)
        free(self._entry_ids)

    # -- C accessors (no bounds checks: 0 <= i < count) -----------------

    cdef inline Py_ssize_t entry_start(self, Py_ssize_t i) noexcept:
        if self._end_offsets:
            return self._offsets[i - 1] if i else 0
        return self._offsets[i]

    cdef inline Py_ssize_t entry_end(self, Py_ssize_t i) noexcept:
        if self._end_offsets:
            return self._offsets[i]
        return self._offsets[i + 1] if i + 1 < self.count else self._blob_length

    cdef inline Py_ssize_t key_index(self, Py_ssize_t i) noexcept:
        if self._has_key_indexes:
            return self._key_indexes[i]
        return i if self._key_per_position else 0

    cdef inline bytes entry_key(self, Py_ssize_t i):
        return <bytes>self._keys[self.key_index(i)]

    cdef Py_ssize_t write_entry_id(self, Py_ssize_t i, char* out) noexcept:
        """Write entry i's XADD id at ``out`` (MAX_ENTRY_ID_BYTES of room); return its length."""
        if self._entry_ids == NULL:
            out[0] = c'*'
            return 1
        return write_xadd_id(&self._entry_ids[i], out)

    cdef bint asks_for(self, uint8_t form) noexcept:
        """Whether an entry's id has ``form`` (ID_MS_ANY_SEQ, ID_EXACT)."""
        cdef Py_ssize_t i
        if self._entry_ids == NULL:
            return False
        for i in range(self.count):
            if self._entry_ids[i].form == form:
                return True
        return False

    cdef str first_decreasing_id(self):
        """Why Redis would refuse part of this batch, if its explicit entry ids do
        not increase within a stream; None otherwise. Checked before framing, so
        a refused batch writes nothing (ids at or below what a stream already
        holds can only be refused by Redis, after the earlier entries)."""
        cdef Py_ssize_t i, key
        cdef EntryId* entry_id
        cdef dict last = {}
        if self._entry_ids == NULL:
            return None
        for i in range(self.count):
            entry_id = &self._entry_ids[i]
            if entry_id.form == ID_ANY:
                continue
            key = self.key_index(i)
            previous = last.get(key)
            exact = entry_id.form == ID_EXACT
            if previous is not None:
                previous_ms, previous_seq, previous_exact = previous
                if exact and previous_exact:
                    refused = (entry_id.ms, entry_id.seq) <= (previous_ms, previous_seq)
                else:
                    # "ms-*" takes the next sequence of that millisecond: only a smaller ms fails.
                    refused = entry_id.ms < previous_ms
                if refused:
                    return f"entry {i}: entry ids must increase within a stream"
            last[key] = (entry_id.ms, entry_id.seq, exact)
        return None

    # -- Python accessors (for tests and the Python layer) ---------------

    def __len__(self):
        return self.count

    cdef int _check_index(self, Py_ssize_t i) except -1:
        if not 0 <= i < self.count:
            raise IndexError(f"entry index {i} out of range for {self.count} entries")
        return 0

    def start(self, Py_ssize_t i):
        """Offset in the blob where entry ``i`` starts."""
        self._check_index(i)
        return self.entry_start(i)

    def end(self, Py_ssize_t i):
        """Offset in the blob where entry ``i`` ends (exclusive)."""
        self._check_index(i)
        return self.entry_end(i)

    def key(self, Py_ssize_t i):
        """Stream key of entry ``i`` (UTF-8 bytes)."""
        self._check_index(i)
        return self.entry_key(i)

    def entry_id(self, Py_ssize_t i):
        """Entry id for XADD: ``b"*"``, ``b"<ms>-*"`` or ``b"<ms>-<seq>"``."""
        cdef char text[MAX_ENTRY_ID_BYTES]
        self._check_index(i)
        return PyBytes_FromStringAndSize(text, self.write_entry_id(i, text))

    def entries(self):
        """All entries as ``(key, entry_id, start, end)`` tuples."""
        return [(self.key(i), self.entry_id(i), self.entry_start(i), self.entry_end(i))
                for i in range(self.count)]

    @property
    def keys(self):
        """The distinct stream keys; entry i's is ``keys[key_index(i)]`` in C."""
        return tuple(self._keys)

    @property
    def offsets(self):
        """How the header's offsets were read: "start" or "end"."""
        return "end" if self._end_offsets else "start"

    # -- parsing ---------------------------------------------------------

    cdef int _append(self, ItemForm form, Py_ssize_t offset, int32_t spelling,
                     EntryId* entry_id) except -1:
        if self.count == self._capacity:
            self._grow()
        self._offsets[self.count] = offset
        if self._has_key_indexes:
            self._key_indexes[self.count] = spelling
        if form == FORM_SID_TS_OFFSET:
            self._entry_ids[self.count] = entry_id[0]
        self.count += 1
        return 0

    cdef int _grow(self) except -1:
        cdef Py_ssize_t capacity = self._capacity * 2 if self._capacity else 16
        cdef void* grown
        grown = realloc(self._offsets, capacity * sizeof(Py_ssize_t))
        if grown == NULL:
            raise MemoryError()
        self._offsets = <Py_ssize_t*>grown
        if self._has_key_indexes:
            grown = realloc(self._key_indexes, capacity * sizeof(int32_t))
            if grown == NULL:
                raise MemoryError()
            self._key_indexes = <int32_t*>grown
        if self._form == FORM_SID_TS_OFFSET:
            grown = realloc(self._entry_ids, capacity * sizeof(EntryId))
            if grown == NULL:
                raise MemoryError()
            self._entry_ids = <EntryId*>grown
        self._capacity = capacity
        return 0

    cdef int _start_form(self, ItemForm form, RouteMode route_mode) except -1:
        # The first item fixes the form, and so which arrays exist: a single
        # stream route needs no per-entry key, plain offsets carry no TS.
        self._form = form
        self._has_key_indexes = form != FORM_OFFSET and route_mode != ROUTE_SINGLE
        return self._grow()

    cdef inline Py_ssize_t _checked_offset(self, ScannedInt* value, Py_ssize_t entry) except -1:
        if (value.negative or value.too_large or value.value > <uint64_t>self._blob_length
                or (entry and <Py_ssize_t>value.value < self._offsets[entry - 1])):
            return self._refuse_offset(value, entry)
        return <Py_ssize_t>value.value

    cdef int _refuse_offset(self, ScannedInt* value, Py_ssize_t entry) except -1:
        # Cold path, kept out of _checked_offset so that stays small enough to inline.
        if value.negative or value.too_large or value.value > <uint64_t>self._blob_length:
            raise BatchHeaderError(
                f"entry {entry}: offset outside the blob (0..{self._blob_length})")
        raise BatchHeaderError(
            f"entry {entry}: offset {value.value} is below the previous offset "
            f"{self._offsets[entry - 1]}")


cdef int _scan_entry_id(HeaderCursor* cursor, EntryId* out, Py_ssize_t entry) except -1:
    """Read the TS of a [SID, TS, OFFSET] item: null, an integer or a string."""
    cdef ScannedInt number
    cdef ScannedString span
    cdef int c = peek(cursor)
    cdef bytes text
    out.ms = 0
    out.seq = 0
    if scan_null(cursor):
        out.form = ID_ANY
    elif c == c'-' or (c >= 0 and is_digit(<unsigned char>c)):
        scan_int(cursor, &number, entry, "a timestamp")
        if number.negative or number.too_large:
            raise BatchHeaderError(f"entry {entry}: timestamp outside 0..2**64-1 milliseconds")
        out.form = ID_MS_ANY_SEQ
        out.ms = number.value
    elif c == c'"':
        scan_string(cursor, &span)
        if span.has_escape:
            # Rare: decode, then read the plain text.
            try:
                text = decode_string(cursor.start, &span).encode("utf-8")
            except UnicodeError:
                raise BatchHeaderError(f"entry {entry}: entry id is not valid text") from None
            _read_xadd_id(<const unsigned char*>PyBytes_AS_STRING(text),
                          PyBytes_GET_SIZE(text), out, entry)
        else:
            _read_xadd_id(cursor.start + span.offset, span.length, out, entry)
    else:
        syntax_error(cursor, "an entry id (null, an integer or a string)")
    return 0


cdef int _read_xadd_id(const unsigned char* text, Py_ssize_t length, EntryId* out,
                       Py_ssize_t entry) except -1:
    # "*", "ms", "ms-*" or "ms-seq", each number decimal and within uint64_t.
    cdef EntryIdForm form = read_entry_id(text, length, &out.ms, &out.seq)
    if form == ID_ANY or form == ID_MS_ANY_SEQ or form == ID_EXACT:
        out.form = form
    elif form == ID_MS:
        out.form = ID_MS_ANY_SEQ
    else:
        # Quote only the start: the reason must fit in a close frame anyway.
        raise BatchHeaderError(
            f"entry {entry}: entry id must be \"ms-seq\", \"ms-*\", \"ms\" or \"*\", not "
            f"{PyUnicode_DecodeUTF8(<const char*>text, min(length, 48), 'replace')!r}")
    if out.form == ID_EXACT and out.ms == 0 and out.seq == 0:
        raise BatchHeaderError(f"entry {entry}: entry id 0-0 is not allowed by Redis")
    return 0


cdef ItemForm _scan_list_item(HeaderCursor* cursor, ScannedInt* offset, ScannedString* sid,
                              EntryId* entry_id, Py_ssize_t entry) except FORM_NONE:
    """Read `[SID, OFFSET]` or `[SID, TS, OFFSET]`, the cursor on its '['."""
    cdef ItemForm form
    cdef int c
    cursor.pos += 1
    skip_space(cursor)
    if peek(cursor) != c'"':
        raise BatchHeaderError(f"entry {entry}: a list item must start with a stream id string")
    scan_string(cursor, sid)
    skip_space(cursor)
    if peek(cursor) != c',':
        syntax_error(cursor, "',' after the stream id")
    cursor.pos += 1
    skip_space(cursor)
    # The second value is the offset of [SID, OFFSET] or the TS of
    # [SID, TS, OFFSET]: what follows it decides.
    c = peek(cursor)
    entry_id.form = ID_ANY
    if c == c'-' or (c >= 0 and is_digit(<unsigned char>c)):
        scan_int(cursor, offset, entry, "an offset")
        skip_space(cursor)
        if peek(cursor) == c']':
            cursor.pos += 1
            return FORM_SID_OFFSET
        if offset.negative or offset.too_large:
            raise BatchHeaderError(f"entry {entry}: timestamp outside 0..2**64-1 milliseconds")
        entry_id.form = ID_MS_ANY_SEQ
        entry_id.ms = offset.value
    else:
        _scan_entry_id(cursor, entry_id, entry)
        skip_space(cursor)
        if peek(cursor) == c']':
            raise BatchHeaderError(f"entry {entry}: the last value of an item must be an offset")
    if peek(cursor) != c',':
        syntax_error(cursor, "',' or ']' in a list item")
    cursor.pos += 1
    skip_space(cursor)
    c = peek(cursor)
    if not (c == c'-' or (c >= 0 and is_digit(<unsigned char>c))):
        raise BatchHeaderError(f"entry {entry}: the last value of an item must be an offset")
    scan_int(cursor, offset, entry, "an offset")
    skip_space(cursor)
    if peek(cursor) != c']':
        raise BatchHeaderError(f"entry {entry}: a list item has 2 or 3 values")
    cursor.pos += 1
    return FORM_SID_TS_OFFSET


cdef int _scan_json_list(BatchHeader header, HeaderCursor* cursor, RouteMode route_mode,
                         _StreamIdSpellings spellings) except -1:
    cdef ScannedInt number
    cdef ScannedString sid
    cdef EntryId entry_id
    cdef ItemForm form
    cdef int32_t spelling
    cdef Py_ssize_t entry = 0
    cdef int c
    cursor.pos += 1
    skip_space(cursor)
    if peek(cursor) == c']':
        raise BatchHeaderError("batch header lists no entries")
    while True:
        c = peek(cursor)
        spelling = 0
        if c == c'[':
            form = _scan_list_item(cursor, &number, &sid, &entry_id, entry)
            spelling = spellings.intern(cursor.start, &sid)
        elif c == c'-' or (c >= 0 and is_digit(<unsigned char>c)):
            form = FORM_OFFSET
            scan_int(cursor, &number, entry, "an offset")
        else:
            raise BatchHeaderError(
                f"entry {entry}: items must be OFFSET, [SID, OFFSET] or [SID, TS, OFFSET]")
        if header._form == FORM_NONE:
            header._start_form(form, route_mode)
        elif form != header._form:
            raise BatchHeaderError(
                f"entry {entry}: mixes item forms; all items must be OFFSET, "
                "[SID, OFFSET] or [SID, TS, OFFSET]")
        header._append(form, header._checked_offset(&number, entry), spelling, &entry_id)
        entry += 1
        skip_space(cursor)
        c = peek(cursor)
        if c == c']':
            cursor.pos += 1
            break
        if c != c',':
            syntax_error(cursor, "',' or ']' after an item")
        cursor.pos += 1
        skip_space(cursor)
    skip_space(cursor)
    if cursor.pos != cursor.end:
        syntax_error(cursor, "nothing after the closing ']'")
    return 0


cdef int _scan_comma_line(BatchHeader header, HeaderCursor* cursor) except -1:
    # The plain form without brackets: "0,7,14", whitespace allowed.
    cdef ScannedInt number
    cdef Py_ssize_t entry = 0
    cdef int c
    header._start_form(FORM_OFFSET, ROUTE_SINGLE)
    while True:
        c = peek(cursor)
        if not (c == c'-' or (c >= 0 and is_digit(<unsigned char>c))):
            syntax_error(cursor, "an integer offset")
        scan_int(cursor, &number, entry, "an offset")
        header._append(FORM_OFFSET, header._checked_offset(&number, entry), 0, NULL)
        entry += 1
        skip_space(cursor)
        if cursor.pos == cursor.end:
            return 0
        if peek(cursor) != c',':
            syntax_error(cursor, "',' between offsets")
        cursor.pos += 1
        skip_space(cursor)


cdef int _resolve_offsets(BatchHeader header, OffsetsMode mode) except -1:
    # PROTOCOL.md: START offsets must begin at 0 (else bytes are dropped);
    # END offsets are cumulative lengths ending at the blob's length. AUTO
    # reads "last == blob length" as END, else "first == 0" as START.
    cdef Py_ssize_t first = header._offsets[0]
    cdef Py_ssize_t last = header._offsets[header.count - 1]
    cdef Py_ssize_t blob_length = header._blob_length
    if mode == OFFSETS_AUTO:
        if last == blob_length:
            header._end_offsets = True
        elif first == 0:
            header._end_offsets = False
        else:
            raise BatchHeaderError(
                f"offsets are neither start (first {first} is not 0) nor end "
                f"(last {last} is not the blob length {blob_length})")
    elif mode == OFFSETS_START:
        if first != 0:
            raise BatchHeaderError(
                f"start offsets must begin at 0, not {first} (bytes before it would be lost)")
        header._end_offsets = False
    else:
        if last != blob_length:
            raise BatchHeaderError(
                f"the last end offset is {last}, not the blob length {blob_length}")
        header._end_offsets = True
    return 0


cdef int _resolve_keys(BatchHeader header, BatchRoute route, _StreamIdSpellings spellings,
                       const unsigned char* start) except -1:
    """Decode each distinct header stream id once and map entries to keys."""
    cdef list keys
    cdef dict key_indexes
    cdef int32_t* remap = NULL
    cdef Py_ssize_t i
    cdef bint merged = False
    cdef str sid
    cdef bytes key
    if header._form == FORM_OFFSET:
        if route._mode == ROUTE_ANY:
            raise BatchHeaderError("the path '*' needs a stream id in every header item")
        if route._mode == ROUTE_LISTED:
            if header.count != len(route._keys):
                raise BatchHeaderError(
                    f"header has {header.count} entries but the path lists "
                    f"{len(route._keys)} streams")
            header._key_per_position = True
        header._keys = list(route._keys)
        return 0
    # Every spelling is decoded, even when a single-stream route ignores it,
    # so that a header with broken text is refused whatever the route.
    keys = []
    key_indexes = {}
    remap = <int32_t*>realloc(NULL, (spellings.count or 1) * sizeof(int32_t))
    if remap == NULL:
        raise MemoryError()
    try:
        for i in range(spellings.count):
            try:
                sid = decode_string(start, &spellings.spans[i])
            except UnicodeDecodeError:
                raise BatchHeaderError("a stream id in the header is not valid UTF-8") from None
            if route._mode == ROUTE_SINGLE:
                continue
            try:
                key = check_stream_id(sid)
            except InvalidStreamId as error:
                raise BatchHeaderError(f"header {error}") from None
            found = key_indexes.get(key)
            if found is None:
                found = len(keys)
                key_indexes[key] = found
                keys.append(key)
            if found != i:
                merged = True
            remap[i] = found
        if route._mode == ROUTE_SINGLE:
            header._keys = list(route._keys)
            return 0
        # Only now, with the header known to be well formed, may a stream
        # the socket cannot use decide the close code (1008).
        for key in keys:
            if route._mode == ROUTE_LISTED and key not in route._allowed:
                raise BatchHeaderError(
                    f"stream {key.decode('utf-8')!r} is not one of the path's streams",
                    CLOSE_POLICY_VIOLATION)
        if merged:
            # Two spellings of one id ("a" and "\u0061") share a key.
            for i in range(header.count):
                header._key_indexes[i] = remap[header._key_indexes[i]]
        header._keys = keys
    finally:
        free(remap)
    return 0


cdef BatchHeader parse_batch_header_c(const char* data, Py_ssize_t length,
                                      Py_ssize_t blob_length, OffsetsMode offsets_mode,
                                      BatchRoute route):
    """Parse the header text ``data[:length]`` for a blob of ``blob_length`` bytes.

    The C entry point for the push session; raises BatchHeaderError.
    """
    cdef BatchHeader header = BatchHeader.__new__(BatchHeader)
    cdef _StreamIdSpellings spellings = _StreamIdSpellings.__new__(_StreamIdSpellings)
    cdef HeaderCursor cursor
    cdef int c
    if blob_length < 0:
        raise ValueError("blob length must not be negative")
    header._blob_length = blob_length
    cursor.start = <const unsigned char*>data
    cursor.pos = cursor.start
    cursor.end = cursor.start + length
    skip_space(&cursor)
    c = peek(&cursor)
    if c == c'[':
        _scan_json_list(header, &cursor, route._mode, spellings)
    elif c == c'-' or (c >= 0 and is_digit(<unsigned char>c)):
        _scan_comma_line(header, &cursor)
    elif c < 0:
        raise BatchHeaderError("batch header is empty")
    else:
        raise BatchHeaderError(
            "batch header must be a JSON list or a comma-separated line of integers")
    _resolve_offsets(header, offsets_mode)
    _resolve_keys(header, route, spellings, cursor.start)
    return header


def parse_batch_header(header, Py_ssize_t blob_len, str offsets="auto",
                       str route_mode="single", route_sids=()):
    """Parse a batch header (``str`` or UTF-8 bytes) for a blob of ``blob_len`` bytes.

    ``offsets`` is "auto", "start" or "end"; ``route_mode`` and
    ``route_sids`` describe the socket's path as for ``BatchRoute``.
    Raises BatchHeaderError (with ``close_code``) for a header to refuse.
    """
    return BatchRoute(route_mode, route_sids).parse(header, blob_len, offsets)
