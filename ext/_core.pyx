# cython: language_level=3
"""engine._core: the per-frame, per-entry and per-reply code of the engine.

One extension module made of included parts (as uvloop does), so the parts
share C-level functions without cross-module calls.
"""

include "stream_id.pxi"
include "decimal_text.pxi"
include "key_slot.pxi"
include "resp_writer.pxi"
include "header_scanner.pxi"
include "batch_header.pxi"
include "redis_pipe.pxi"
include "push_session.pxi"
include "stream_reply.pxi"
include "stream_reader.pxi"
include "pull_session.pxi"
