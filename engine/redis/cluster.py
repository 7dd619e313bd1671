"""A Redis Cluster behind the engine: its slot map, read with CLUSTER SLOTS,
made into the shard map (engine._core.Shards) and kept true.

A node of the shard map is a shard of the cluster: a master and its
replicas. When a replica is promoted, the node keeps its index and its
connections move to the new master's address; a master that joins gets a
new node. The map is read again when a connection is told MOVED or ASK (the
command was not executed there), and every REFRESH_SECONDS, which is how a
failover is noticed while nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hiredis import ReplyError

from engine._core import RedisConnection, RedisPipe, ResendHandle, Shards
from engine.redis.link import CONNECT_ERRORS, RedisAddress, describe, url_at

if TYPE_CHECKING:
    from engine.redis.resend import Resender

log = logging.getLogger("engine.redis")

REFRESH_SECONDS = 1.0
# A storm of MOVED replies (a resharding) reads the map at most this often.
LEAST_SECONDS_BETWEEN_READS = 0.05


@dataclass(frozen=True)
class SlotRange:
    first: int
    last: int
    master: tuple[str, int, str]  # host, port, node id
    replica_ids: tuple[str, ...]


@dataclass
class ClusterNode:
    """One shard: where its master is, and the ids of every node it has had."""

    address: RedisAddress
    ids: set[str] = field(default_factory=set)


async def _call(address: RedisAddress, *command: str) -> object:
    connection: RedisConnection = await address.open(RedisPipe)  # hiredis: any reply
    try:
        return await connection.call(*command)
    finally:
        connection.close()


async def is_cluster(address: RedisAddress) -> bool:
    """Whether the Redis at ``address`` is a node of a cluster (CLUSTER INFO)."""
    if address.unix_path is not None:
        return False  # a cluster's nodes announce TCP addresses
    try:
        await _call(address, "CLUSTER", "INFO")
    except ReplyError:
        return False  # "cluster support disabled"
    return True


def parse_slots(reply: object) -> list[SlotRange]:
    """CLUSTER SLOTS: [first, last, [host, port, id, ...], replicas...] per range."""
    ranges = []
    for item in reply:  # type: ignore[attr-defined]
        first, last, master, *replicas = item
        host = master[0].decode() if master[0] else ""
        ranges.append(
            SlotRange(
                int(first),
                int(last),
                (host, int(master[1]), master[2].decode()),
                tuple(replica[2].decode() for replica in replicas),
            )
        )
    return ranges


async def read_slots(addresses: list[RedisAddress]) -> tuple[list[SlotRange], RedisAddress]:
    """The slot map, from the first of ``addresses`` that answers (and which one).
    Raises the last failure when none does."""
    failure: BaseException = ConnectionError("no cluster node to ask")
    for address in addresses:
        try:
            async with asyncio.timeout(2):
                return parse_slots(await _call(address, "CLUSTER", "SLOTS")), address
        except CONNECT_ERRORS as error:
            failure = error
    raise failure


class ClusterMap:
    """The cluster's shards as nodes of ``shards``, and the work of keeping them true.

    ``on_node_added(node, address)`` is called for a master that joined (its
    connections to be opened); ``on_master_moved(node)`` when a shard's master
    changed address (its connections to be reopened); ``on_slots_moved()``
    after any change of the map (followed streams to be followed on their new
    node)."""

    def __init__(self, seed_url: str, shards: Shards, seeds: Sequence[str] = ()):
        # The node that answered at startup: its scheme, credentials and options
        # are reused for every other node.
        self.seed_url = seed_url
        # Where the map can be read when no known master answers: every seed
        # given, the one that answered first.
        self.seeds = [RedisAddress(url) for url in dict.fromkeys([seed_url, *seeds])]
        self.shards = shards
        self.nodes: list[ClusterNode] = []
        self.on_node_added: Callable[[int, RedisAddress], object] = lambda node, address: None
        self.on_master_moved: Callable[[int], object] = lambda node: None
        self.on_slots_moved: Callable[[], object] = lambda: None
        self.reads = 0
        # Sends again what a node did not execute (set up, and closed after the
        # connections that use it, by the runtime).
        self.resender: Resender | None = None
        self._placed: list[tuple[int, int, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._closed = False

    @property
    def addresses(self) -> list[RedisAddress]:
        return [node.address for node in self.nodes]

    async def load(self) -> None:
        """Read the map the first time: one node per shard (before any connection)."""
        ranges, _ = await read_slots(self.seeds)
        self.apply(ranges)

    def apply(self, ranges: list[SlotRange]) -> bool:
        """Make ``ranges`` the shard map; whether any slot changed node."""
        placed = sorted((r.first, r.last, self._node_for(r)) for r in ranges)
        if placed == self._placed:
            return False
        for first, last, node in placed:
            self.shards.assign(first, last, node)
        self._placed = placed
        return True

    def _node_for(self, slot_range: SlotRange) -> int:
        host, port, node_id = slot_range.master
        known = {node_id, *slot_range.replica_ids}
        for index, node in enumerate(self.nodes):
            if node_id in node.ids or (node.address.host, node.address.port) == (host, port):
                if (node.address.host, node.address.port) != (host, port):
                    log.warning(
                        "the master of a cluster shard moved from %s:%d to %s:%d",
                        node.address.host,
                        node.address.port,
                        host,
                        port,
                    )
                    node.address.move_to(host, port)
                    self.on_master_moved(index)
                node.ids |= known
                return index
        address = RedisAddress(url_at(self.seed_url, host, port))
        self.nodes.append(ClusterNode(address, known))
        index = self.shards.add_node() if len(self.nodes) > self.shards.nodes else len(self.nodes) - 1
        log.info("cluster node %d: master %s", index, describe(address.url))
        if self._placed:  # not while the first map is read
            self.on_node_added(index, address)
        return index

    # -- kept true -------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def redirected(self, error: ReplyError) -> None:
        """A connection was told MOVED or ASK: read the map again soon."""
        self._again = True

    async def _watch(self) -> None:
        waited = 0.0
        while not self._closed:
            await asyncio.sleep(LEAST_SECONDS_BETWEEN_READS)
            waited += LEAST_SECONDS_BETWEEN_READS
            if not self._again and waited < REFRESH_SECONDS:
                continue
            self._again = False
            waited = 0.0
            try:
                ranges, _ = await read_slots([*self.addresses, *self.seeds])
            except CONNECT_ERRORS as error:
                log.warning("no node of the Redis Cluster answered CLUSTER SLOTS (%s)", error)
                continue
            self.reads += 1
            if self.apply(ranges):
                self.on_slots_moved()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def with_redirect(
    factory: Callable[[], RedisConnection],
    on_redirect: Callable[[ReplyError], object],
    on_resend: Callable[[ReplyError, bytes, ResendHandle], object] | None = None,
) -> Callable[[], RedisConnection]:
    """``factory`` whose connections report MOVED and ASK replies to ``on_redirect``
    and, with ``on_resend``, keep what they write to have it sent again."""

    def make() -> RedisConnection:
        connection = factory()
        connection.on_redirect = on_redirect
        if on_resend is not None:
            connection.keeps_sent = True
            connection.on_resend = on_resend
        return connection

    return make
