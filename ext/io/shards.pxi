# Which Redis connection serves a key: the seam between the sessions and the
# Redis nodes behind the engine.
#
# The push path asks for the ingest connection (RedisPipe) of each key it
# stores, the read path for the reader (StreamReader) of each key it reads,
# and groups keys by node. One node serves every key today; a Redis Cluster's
# slot map assigns slots to nodes (`assign`), keys placed by their slot
# (sansio/key_slot.pxi). Connections are published here by their links as
# they connect and go away (None while a node is unreachable).
#
# Framed ingest connections are flushed together (`flush_framed`): once per
# read pass of a producer socket, or at once when a frame's payload is held
# by reference.
#
# Uses: common.pxi, sansio/key_slot.pxi, io/redis_connection.pxi

cdef enum:
    # A producer socket writes its framed commands out once this many bytes
    # are waiting, so a long read pass never has to grow the buffer much.
    FLUSH_AT_BYTES = 256 * 1024


@cython.final
cdef class Shards:
    """The Redis connections of one engine process, by node, and the node of each slot."""

    cdef readonly Py_ssize_t nodes
    cdef list pipes                 # RedisPipe or None, per node
    cdef list durable_pipes         # RedisPipe or None, per node: writes that wait for barriers
    cdef list readers               # StreamReader or None, per node
    cdef uint16_t* node_of_slot     # NULL while one node serves every slot
    cdef list framed                # pipes with commands framed and not written
    # Changes with every change of the slot map: a producer whose messages in
    # flight went by another version waits for them before sending more.
    cdef readonly uint64_t version

    def __init__(self, Py_ssize_t nodes=1):
        if nodes < 1:
            raise ValueError("a shard map needs at least one node")
        self.nodes = nodes
        self.pipes = [None] * nodes
        self.durable_pipes = [None] * nodes
        self.readers = [None] * nodes
        self.framed = []

    def add_node(self):
        """One more node (a master that joined the cluster); its index."""
        self.pipes.append(None)
        self.durable_pipes.append(None)
        self.readers.append(None)
        self.nodes += 1
        return self.nodes - 1

    def __dealloc__(self):
        PyMem_Free(self.node_of_slot)

    def assign(self, int first_slot, int last_slot, Py_ssize_t node):
        """Slots ``first_slot..last_slot`` (inclusive) are served by ``node``."""
        cdef int slot
        if not 0 <= first_slot <= last_slot < REDIS_CLUSTER_SLOTS:
            raise ValueError(f"slots {first_slot}..{last_slot} are not within 0..{REDIS_CLUSTER_SLOTS - 1}")
        if not 0 <= node < self.nodes:
            raise ValueError(f"node {node} is not within 0..{self.nodes - 1}")
        if self.node_of_slot == NULL:
            self.node_of_slot = <uint16_t*>PyMem_Malloc(REDIS_CLUSTER_SLOTS * sizeof(uint16_t))
            if self.node_of_slot == NULL:
                raise MemoryError()
            memset(self.node_of_slot, 0, REDIS_CLUSTER_SLOTS * sizeof(uint16_t))
        for slot in range(first_slot, last_slot + 1):
            self.node_of_slot[slot] = <uint16_t>node
        self.version += 1

    # -- the sessions' side (C) ------------------------------------------

    cdef inline Py_ssize_t node_of(self, bytes key) noexcept:
        if self.node_of_slot == NULL:
            return 0
        return self.node_of_slot[redis_key_slot(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))]

    def node_of_slot_at(self, int slot):
        """The node that serves ``slot``."""
        if not 0 <= slot < REDIS_CLUSTER_SLOTS:
            raise ValueError(f"slot {slot} is not within 0..{REDIS_CLUSTER_SLOTS - 1}")
        return 0 if self.node_of_slot == NULL else self.node_of_slot[slot]

    cdef inline RedisPipe pipe_for(self, bytes key, bint durable=False):
        """The ingest connection of ``key``'s node, or None while it is down. A
        durable write goes on a connection of its own: its barriers (WAITAOF,
        WAIT) block that connection until disks and replicas confirm."""
        cdef object pipe = (self.durable_pipes if durable else self.pipes)[self.node_of(key)]
        if pipe is None or not (<RedisPipe>pipe).connected:
            return None
        return <RedisPipe>pipe

    cdef inline StreamReader reader_for(self, bytes key):
        """The read connection of ``key``'s node, or None while it is down."""
        cdef object reader = self.readers[self.node_of(key)]
        if reader is None or not (<StreamReader>reader).connected:
            return None
        return <StreamReader>reader

    cdef inline int framed_into(self, RedisPipe pipe) except -1:
        """``pipe`` has commands framed: written by the next ``flush_framed``."""
        if not pipe.queued_for_flush:
            pipe.queued_for_flush = True
            self.framed.append(pipe)
        return 0

    cdef int flush_framed(self, bint now) except -1:
        """Write what the pipes framed: all of it when ``now`` (the end of a read
        pass), else only what must not wait (payloads held by reference into a
        buffer the caller is about to reuse, or a large backlog)."""
        cdef RedisPipe pipe
        cdef Py_ssize_t i = 0
        while i < len(self.framed):
            pipe = <RedisPipe>self.framed[i]
            if (now or not pipe.queued_for_flush or pipe.writer.has_references()
                    or pipe.writer.pending() >= FLUSH_AT_BYTES):
                pipe.flush()  # clears queued_for_flush
                del self.framed[i]
            else:
                i += 1
        return 0

    # -- the links' side and the Python API ------------------------------

    def set_pipe(self, Py_ssize_t node, RedisPipe pipe):
        """Publish ``node``'s ingest connection (None: it is down)."""
        self.pipes[node] = pipe

    def set_durable_pipe(self, Py_ssize_t node, RedisPipe pipe):
        """Publish ``node``'s connection for durable writes (None: it is down)."""
        self.durable_pipes[node] = pipe

    def set_reader(self, Py_ssize_t node, StreamReader reader):
        """Publish ``node``'s read connection (None: it is down)."""
        self.readers[node] = reader

    def pipe_for_key(self, bytes key, bint durable=False):
        """The ingest connection of ``key``, or None while its node is down."""
        return self.pipe_for(key, durable)

    def reader_for_key(self, bytes key):
        """The read connection of ``key``, or None while its node is down."""
        return self.reader_for(key)

    def pipe_for_node(self, Py_ssize_t node):
        """The ingest connection of ``node``, or None while it is down."""
        cdef object pipe = self.pipes[node]
        if pipe is None or not (<RedisPipe>pipe).connected:
            return None
        return pipe

    def reader_for_node(self, Py_ssize_t node):
        """The read connection of ``node``, or None while it is down."""
        cdef object reader = self.readers[node]
        if reader is None or not (<StreamReader>reader).connected:
            return None
        return reader

    def node_of_key(self, bytes key):
        """The node that serves ``key``."""
        return self.node_of(key)

    def group_by_node(self, keys):
        """``{node: [index, ...]}`` of ``keys`` (bytes), indexes in order: what one
        connection can read or write together."""
        cdef dict groups = {}
        cdef Py_ssize_t i = 0
        for key in keys:
            groups.setdefault(self.node_of(key), []).append(i)
            i += 1
        return groups
