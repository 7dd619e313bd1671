import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Literal, final

from picows import WSListener
from typing_extensions import Buffer

class InvalidStreamId(ValueError): ...

def check_stream_id(sid: str) -> bytes: ...

# key_slot.pxi
def key_slot(key: Buffer) -> int: ...

# resp_writer.pxi
@final
class RespWriter:
    def __init__(self, by_reference_threshold: int = 16384, initial_capacity: int = 65536) -> None: ...
    def xadd(self, key: Buffer, entry_id: Buffer, payload: Buffer, maxlen: int) -> None: ...
    def command(self, *arguments: Buffer | str | int) -> None: ...
    def take(self) -> list[bytes | memoryview]: ...
    @property
    def by_reference_threshold(self) -> int: ...
    @property
    def pending_bytes(self) -> int: ...
    @property
    def command_count(self) -> int: ...

# batch_header.pxi
_OffsetsName = Literal["auto", "start", "end"]
_RouteModeName = Literal["single", "any", "listed"]

class BatchHeaderError(ValueError):
    reason: str
    close_code: int
    def __init__(self, reason: str, close_code: int = 1007) -> None: ...

@final
class BatchRoute:
    def __init__(self, mode: _RouteModeName, sids: Iterable[str] = ()) -> None: ...
    def parse(self, header: str | Buffer, blob_len: int, offsets: _OffsetsName = "auto") -> BatchHeader: ...
    @property
    def mode(self) -> _RouteModeName: ...
    @property
    def keys(self) -> tuple[bytes, ...]: ...

@final
class BatchHeader:
    @property
    def count(self) -> int: ...
    @property
    def keys(self) -> tuple[bytes, ...]: ...
    @property
    def offsets(self) -> Literal["start", "end"]: ...
    def __len__(self) -> int: ...
    def start(self, i: int) -> int: ...
    def end(self, i: int) -> int: ...
    def key(self, i: int) -> bytes: ...
    def entry_id(self, i: int) -> bytes: ...
    def entries(self) -> list[tuple[bytes, bytes, int, int]]: ...

def parse_batch_header(
    header: str | Buffer,
    blob_len: int,
    offsets: _OffsetsName = "auto",
    route_mode: _RouteModeName = "single",
    route_sids: Iterable[str] = (),
) -> BatchHeader: ...

# -- Redis ingest connection (ext/redis_pipe.pxi) ---------------------------

class RedisUnavailable(ConnectionError): ...

class PendingBatch:
    owner: Any
    expected: int
    received: int
    replies: list[Any] | None
    error: Exception | None
    nbytes: int
    future: asyncio.Future[Any] | None
    tag: Any

class RedisPipe(asyncio.BufferedProtocol):
    on_lost: Callable[[str], None] | None
    connected: bool
    in_flight_bytes: int
    high_water: int
    low_water: int
    overloaded: bool
    pending_batches: int
    def __init__(
        self,
        on_lost: Callable[[str], None] | None = None,
        high_water: int = ...,
        low_water: int = ...,
        by_reference_threshold: int = ...,
    ) -> None: ...
    async def call(self, *arguments: bytes | str | int) -> Any: ...
    def xadd_many(
        self, entries: Iterable[tuple[bytes, bytes, Buffer, int]]
    ) -> asyncio.Future[list[bytes]]: ...
    def close(self) -> None: ...
    async def drained(self) -> None: ...

# -- producer sockets (ext/push_session.pxi) --------------------------------

class PushSession(WSListener):
    entries_stored: int
    bytes_stored: int
    def __init__(
        self,
        link: Any,
        maxlens: dict[bytes, int],
        load_maxlens: Callable[[list[bytes]], Any],
        route: BatchRoute,
        batch_mode: bool,
        ack: bool,
        offsets: str,
        max_message_size: int,
    ) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def set_held(self, held: bool) -> None: ...
    def replies_done(self) -> None: ...

# -- the read path (ext/stream_reply.pxi, stream_reader.pxi, pull_session.pxi) --

ShapeName = Literal["simple", "xread", "range"]
CursorTuple = tuple[Literal["id", "now", "newest"], int, int]

class RedisProtocolError(ConnectionError): ...

@final
class StreamKey:
    sid: str
    key: bytes
    json: bytes
    def __init__(self, sid: str) -> None: ...

@final
class StreamEntry:
    @property
    def sid(self) -> str: ...
    @property
    def entry_id(self) -> str: ...
    @property
    def id_pair(self) -> tuple[int, int]: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def frames(self) -> tuple[bytes, bytes]: ...

def join_entries(entries: list[StreamEntry]) -> tuple[bytes, str]: ...

@final
class StreamReplyParser:
    def __init__(self) -> None: ...
    def expect(self, shape: ShapeName, keys: Iterable[StreamKey] = ()) -> None: ...
    def feed(self, data: Buffer) -> list[Any]: ...

class StreamReader(asyncio.BufferedProtocol):
    on_lost: Callable[[str], None] | None
    connected: bool
    pending_requests: int
    def __init__(self, on_lost: Callable[[str], None] | None = None) -> None: ...
    def read(
        self, requests: Iterable[tuple[ShapeName, list[StreamKey], tuple[Any, ...]]]
    ) -> asyncio.Future[list[Any]]: ...
    async def call(self, *arguments: bytes | str | int) -> Any: ...
    def close(self) -> None: ...

class StreamRing:
    stream: StreamKey
    def __init__(self, stream: StreamKey, max_entries: int = 1024, max_bytes: int = ...) -> None: ...
    def __len__(self) -> int: ...
    @property
    def floor(self) -> tuple[int, int]: ...
    @property
    def last(self) -> tuple[int, int]: ...

class PullFeed:
    keys: tuple[StreamKey, ...]
    rings: list[StreamRing]
    sessions: set[Any]
    started: bool
    closed: bool
    replies: int
    entries_read: int
    waiting_sessions: int
    def __init__(
        self,
        keys: Iterable[StreamKey],
        read_count: int = 512,
        ring_entries: int = 1024,
        ring_bytes: int = ...,
    ) -> None: ...
    def ring(self, key: bytes) -> StreamRing: ...
    def prime(self, newest: list[Any]) -> None: ...
    def serve(self, reader: StreamReader) -> None: ...
    def stop_serving(self) -> None: ...
    def fail(self, reason: str) -> None: ...
    def close(self) -> None: ...

class PullSession(WSListener):
    steps_sent: int
    entries_sent: int
    bytes_sent: int
    redis_reads: int
    cursor_ids: list[tuple[int, int]]
    def __init__(
        self,
        hub: Any,
        reads: Any,
        keys: list[StreamKey],
        cursors: list[CursorTuple],
        count: int,
        latest: bool,
        onebyone: bool,
        header: bool,
        ack: bool,
        timeout: float,
        sync_index: int,
        min_interval: float,
    ) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
