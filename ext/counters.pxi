# The runtime's counters: one object per engine process, shared by every
# connection and socket. The hot paths increment C fields (no Python call
# per entry); snapshot() reads them for /metrics and the tests.
#
# Uses: common.pxi

cdef enum:
    CLOSE_CODE_FIRST = 1000
    CLOSE_CODE_SLOTS = 16           # 1000..1015; every other code shares one more slot
    ACK_LATENCY_BOUNDS = 16

# Upper bounds (seconds) of the push-to-ack latency buckets; one more bucket
# counts what is slower than the last.
cdef double ACK_LATENCY_LE[ACK_LATENCY_BOUNDS]
ACK_LATENCY_LE[:] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]


# Per-stream counts past the limit are added up under this name.
OTHER_STREAMS = "_other"


@cython.final
cdef class StreamTally:
    """Entries and payload bytes stored per stream, for at most ``limit`` streams
    (the ones seen first; the rest together under OTHER_STREAMS): per-stream
    metrics, kept only when asked for (--metrics-streams)."""

    cdef readonly Py_ssize_t limit
    cdef dict counts                  # stream key (bytes) -> [entries, bytes]
    cdef uint64_t other_entries
    cdef uint64_t other_bytes

    def __init__(self, Py_ssize_t limit):
        if limit < 1:
            raise ValueError("a stream tally needs a limit of at least 1")
        self.limit = limit
        self.counts = {}

    cdef int add(self, bytes key, Py_ssize_t entries, Py_ssize_t nbytes) except -1:
        cdef list count = self.counts.get(key)
        if count is None:
            if len(self.counts) >= self.limit:
                self.other_entries += entries
                self.other_bytes += nbytes
                return 0
            count = [0, 0]
            self.counts[key] = count
        count[0] += entries
        count[1] += nbytes
        return 0

    def record(self, bytes key, Py_ssize_t entries, Py_ssize_t nbytes):
        """Count ``entries`` of ``nbytes`` payload bytes stored in ``key``."""
        self.add(key, entries, nbytes)

    def snapshot(self):
        """``{stream id: [entries, bytes]}``, with OTHER_STREAMS once the limit was passed."""
        result = {key.decode("utf-8", "replace"): list(count) for key, count in self.counts.items()}
        if self.other_entries or self.other_bytes:
            result[OTHER_STREAMS] = [self.other_entries, self.other_bytes]
        return result


@cython.final
cdef class Counters:
    """What one engine process did since it started (sockets: how many are open)."""

    # Producers
    cdef public uint64_t push_messages      # complete WebSocket messages (a batch: header and blob)
    cdef public uint64_t push_entries       # entries Redis confirmed
    cdef public uint64_t push_bytes         # payload bytes of messages stored whole
    cdef public uint64_t push_acks          # acks written to producers
    cdef public uint64_t producer_pauses    # a producer's socket paused while Redis caught up
    # Redis
    cdef public uint64_t redis_replies
    cdef public uint64_t redis_errors       # error replies
    cdef public uint64_t redis_reconnects   # counted by engine/redis/link.py
    cdef public uint64_t redis_resends      # commands sent again after MOVED, ASK, TRYAGAIN, CLUSTERDOWN
    # Consumers
    cdef public uint64_t pull_steps
    cdef public uint64_t pull_entries
    cdef public uint64_t pull_bytes
    cdef public uint64_t pull_catch_up_reads  # a socket behind its feed read Redis itself
    cdef public uint64_t feed_reads         # XREADs of followed streams (Redis' work for following)
    cdef public uint64_t feed_entries       # entries they brought
    cdef public uint64_t notifications      # keyspace notifications of followed streams
    # Open sockets
    cdef public int64_t push_sockets
    cdef public int64_t pull_sockets
    cdef public int64_t sockets_peak        # the most open at once since it was last reset
    cdef uint64_t closes[CLOSE_CODE_SLOTS + 1]
    # Producer message arrived -> its ack written: a histogram kept in C.
    cdef uint64_t ack_latency_counts[ACK_LATENCY_BOUNDS + 1]
    cdef double ack_latency_sum
    cdef public StreamTally streams         # per-stream entries and bytes; None unless asked for

    cdef inline void count_ack_latency(self, double seconds, uint64_t acks) noexcept:
        cdef int bucket = 0
        while bucket < ACK_LATENCY_BOUNDS and seconds > ACK_LATENCY_LE[bucket]:
            bucket += 1
        self.ack_latency_counts[bucket] += acks
        self.ack_latency_sum += seconds * acks

    cdef inline void socket_opened(self, bint push) noexcept:
        if push:
            self.push_sockets += 1
        else:
            self.pull_sockets += 1
        if self.push_sockets + self.pull_sockets > self.sockets_peak:
            self.sockets_peak = self.push_sockets + self.pull_sockets

    cdef inline void count_close(self, int code) noexcept:
        cdef int slot = code - CLOSE_CODE_FIRST
        if slot < 0 or slot >= CLOSE_CODE_SLOTS:
            slot = CLOSE_CODE_SLOTS
        self.closes[slot] += 1

    def record_close(self, int code):
        """Count a close sent with ``code`` (for closes made in Python)."""
        self.count_close(code)

    def snapshot(self):
        """Every counter by name; ``closes`` maps close codes (0: any other) to
        counts; ``ack_latency`` has the buckets' upper bounds (``le``), the count
        in each (one more: above the last bound) and the sum of seconds."""
        cdef int slot
        closes = {}
        for slot in range(CLOSE_CODE_SLOTS + 1):
            if self.closes[slot]:
                closes[CLOSE_CODE_FIRST + slot if slot < CLOSE_CODE_SLOTS else 0] = self.closes[slot]
        return {
            "push_messages": self.push_messages,
            "push_entries": self.push_entries,
            "push_bytes": self.push_bytes,
            "push_acks": self.push_acks,
            "producer_pauses": self.producer_pauses,
            "redis_replies": self.redis_replies,
            "redis_errors": self.redis_errors,
            "redis_reconnects": self.redis_reconnects,
            "redis_resends": self.redis_resends,
            "pull_steps": self.pull_steps,
            "pull_entries": self.pull_entries,
            "pull_bytes": self.pull_bytes,
            "pull_catch_up_reads": self.pull_catch_up_reads,
            "feed_reads": self.feed_reads,
            "feed_entries": self.feed_entries,
            "notifications": self.notifications,
            "push_sockets": self.push_sockets,
            "pull_sockets": self.pull_sockets,
            "sockets_peak": self.sockets_peak,
            "closes": closes,
            "ack_latency": {
                "le": [ACK_LATENCY_LE[slot] for slot in range(ACK_LATENCY_BOUNDS)],
                "counts": [self.ack_latency_counts[slot] for slot in range(ACK_LATENCY_BOUNDS + 1)],
                "sum": self.ack_latency_sum,
            },
        }
