# cython: language_level=3
"""engine._core: the per-frame, per-entry and per-reply code of the engine.

One extension module made of included parts (as uvloop does), so the parts
share C-level functions without cross-module calls. The include order is the
layering: every part uses only what parts above it define, and says which on
its "Uses:" line (tests/test_layers.py checks both).
"""

# Declarations every part may use, and the runtime's counters.
include "common.pxi"
include "counters.pxi"

# Sans-I/O: parsers and builders that never touch a transport or an event loop.
include "sansio/decimal.pxi"
include "sansio/entry_id.pxi"
include "sansio/stream_id.pxi"
include "sansio/key_slot.pxi"
include "sansio/ws_frame.pxi"
include "sansio/header_scanner.pxi"
include "sansio/batch_header.pxi"
include "sansio/resp_writer.pxi"
include "sansio/stream_entry.pxi"
include "sansio/reply_parser.pxi"
include "sansio/stream_commands.pxi"
include "sansio/step_frames.pxi"

# I/O: protocols that own transports (Redis connections, WebSocket sessions).
include "io/vectored_write.pxi"
include "io/redis_connection.pxi"
include "io/close_log.pxi"
include "io/shards.pxi"
include "io/push_session.pxi"
include "io/pull_feed.pxi"
include "io/keyspace_listener.pxi"
include "io/pull_session.pxi"

# Python views of C state, for tests and metrics.
include "inspect.pxi"
