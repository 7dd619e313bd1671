"""What one engine process holds while it serves: its Redis connections, the
shard map, the pull hub, the metadata cache, counters, tokens and the
WebSocket router. The engine opens and closes it (engine.asgi); the HTTP app
is handed one (api.app.create_app)."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis, RedisCluster

from engine._core import Counters, RedisPipe, Shards, StreamReader, StreamTally
from engine.auth import TokenSigner, load_or_create_secret
from engine.config import Config
from engine.descriptors import DescriptorWatch
from engine.durability import Durability
from engine.maxlen import MaxLenCache
from engine.memory import MemoryTrimmer
from engine.metrics import MetricsShare, RequestStats
from engine.redis.cluster import ClusterMap, is_cluster, with_redirect
from engine.redis.connect import control_client, first_answering, server_of
from engine.redis.link import RedisAddress, RedisLink, describe, seed_urls
from engine.redis.resend import Resender
from engine.redis.servers import ServerVersion
from engine.store import StreamCatalog
from engine.users import UsersFile, dev_login_ok
from engine.ws.hub import MOST_HOT_PER_NODE, PullHub
from engine.ws.router import WebSocketRouter

log = logging.getLogger("engine")

# In-flight bytes of a durable connection (see RedisConnection's bound): an
# fsync barrier may wait a second (appendfsync everysec), taking writes meanwhile.
DURABLE_HIGH_WATER = 64 * 1024 * 1024
DURABLE_LOW_WATER = 16 * 1024 * 1024

# The connections a process holds to each Redis node.
Link = RedisLink[RedisPipe] | RedisLink[StreamReader]


@dataclass
class Runtime:
    """Per-process state. Nothing here is needed by another process: any engine
    process (or host) in front of the same Redis serves any request."""

    config: Config
    control: Redis | RedisCluster  # redis-py, for metadata
    catalog: StreamCatalog
    signer: TokenSigner
    users: UsersFile
    counters: Counters
    shards: Shards  # which ingest and read connection serves a key
    links: list[Link]
    maxlens: MaxLenCache
    pulls: PullHub
    server: ServerVersion  # what the Redis is, for features that depend on it
    aof_enabled: bool
    durability: Durability  # producers' default
    trimmer: MemoryTrimmer
    descriptors: DescriptorWatch
    cluster: ClusterMap | None  # the slot map of a Redis Cluster, kept true; None for one Redis
    metrics_share: MetricsShare | None = None  # with --workers N: this worker's metrics for the others
    http_stats: RequestStats = field(default_factory=RequestStats)  # for /metrics
    started: float = field(default_factory=time.monotonic)  # for /health's uptime
    ws_router: WebSocketRouter = field(init=False)

    def __post_init__(self) -> None:
        self.ws_router = WebSocketRouter(self)
        self.trimmer.forget = self.forget_what_crowds_left
        if self.config.workers > 1:
            self.metrics_share = MetricsShare(self)
            self.metrics_share.start()

    @classmethod
    async def open(cls, config: Config) -> Runtime:
        """Connect to Redis (``config.redis_url``: one URL, or seeds of one Redis
        Cluster) and build everything a process serves with. Raises ValueError
        for a Redis the configuration refuses."""
        if not config.redis_url:
            raise ValueError("the engine needs a Redis URL (PTG_REDIS_URL)")
        seeds = seed_urls(config.redis_url)
        counters = Counters()
        if config.metrics_streams:
            counters.streams = StreamTally(config.metrics_streams)
        shards = Shards()
        # What can fail without Redis comes first: nothing is left open then.
        signer = TokenSigner(config.secret or load_or_create_secret(config.data_dir), config.token_lifetime)
        # The first seed that answers is asked everything else.
        url = await first_answering(seeds)
        address = RedisAddress(url)
        cluster: ClusterMap | None = None
        addresses = [address]
        if await is_cluster(address):
            cluster = ClusterMap(url, shards, seeds)
            cluster.resender = Resender(cluster, shards)
            await cluster.load()
            addresses = cluster.addresses
            log.info("Redis at %s is a cluster of %d masters", describe(url), len(addresses))
        elif len(seeds) > 1:
            raise ValueError(
                f"several Redis URLs name the seeds of one Redis Cluster; {describe(url)} is not a cluster node"
            )
        elif config.redis_cluster:
            raise ValueError(f"--redis-cluster: {describe(url)} is not a cluster node")
        links = await connect_nodes(shards, addresses, counters, cluster)
        # Info on the node that answered (every node of a cluster runs the same
        # server); metadata through redis-py's cluster client, which routes by slot.
        info = control_client(url)
        control: Redis | RedisCluster = info
        if cluster is not None:
            control = RedisCluster.from_url(url, socket_connect_timeout=5)
        try:
            server = await server_of(info)
            aof_enabled = bool((await info.info("persistence")).get("aof_enabled"))
            durability = Durability.parse(config.durability)
            refusal = durability.refusal(server, aof_enabled)
            if refusal is not None:
                raise ValueError(f"--durability: {refusal}")
        except BaseException:
            for link in links:
                link.close()
            await control.aclose()
            await info.aclose()
            raise
        if cluster is not None:
            await info.aclose()
        log.info("Redis at %s is %s", describe(url), server)
        # Invalidations are published on the node that answered: a cluster passes them to every node.
        maxlens = MaxLenCache(control, config.max_len, control_client(url))
        maxlens.start()
        trimmer = MemoryTrimmer(counters)
        trimmer.start()
        descriptors = DescriptorWatch()
        descriptors.start()
        pulls = PullHub(shards, addresses, counters, most_hot=0 if cluster else MOST_HOT_PER_NODE)
        if cluster is not None:
            watch_cluster(cluster, shards, links, pulls, counters)
        return cls(
            config=config,
            control=control,
            catalog=StreamCatalog(control),
            signer=signer,
            users=UsersFile(config.data_dir),
            counters=counters,
            shards=shards,
            links=links,
            maxlens=maxlens,
            pulls=pulls,
            server=server,
            aof_enabled=aof_enabled,
            durability=durability,
            trimmer=trimmer,
            descriptors=descriptors,
            cluster=cluster,
        )

    def forget_what_crowds_left(self) -> None:
        """Before a trim (engine.memory): drop the streams only sockets that left
        needed, and shrink the tables they grew."""
        self.maxlens.forget_unheld(keep_released=False)
        self.pulls.compact()

    def redis_connections_up(self) -> int:
        """This process's connections to Redis that are up now."""
        return sum(link.connection is not None for link in self.links)

    @property
    def lacks_ms_any_seq(self) -> str | None:
        """Why this Redis cannot store "ms-*" entry ids (it picks the sequence from 7.0 on)."""
        if self.server.name == "Redis" and self.server.version < (7, 0, 0):
            return f'{self.server} cannot pick the sequence of an "ms-*" entry id (Redis 7 can)'
        return None

    def durability_refusal(self, durability: Durability) -> str | None:
        """Why this Redis cannot give ``durability``, or None."""
        return durability.refusal(self.server, self.aof_enabled)

    def login_ok(self, user: str, password: str) -> bool:
        if self.config.auth == "dev":
            return dev_login_ok(user, password)
        return self.users.check(user, password)

    async def close(self) -> None:
        if self.metrics_share is not None:
            await self.metrics_share.stop()
        if self.cluster is not None:
            await self.cluster.close()
        await self.trimmer.stop()
        await self.descriptors.stop()
        await self.maxlens.stop()
        await self.pulls.close()
        for link in self.links:
            link.close()
        for link in self.links:
            await link.wait_closed()
        if self.cluster is not None and self.cluster.resender is not None:
            await self.cluster.resender.close()  # nothing can be refused any more
        await self.control.aclose()


async def connect_nodes(
    shards: Shards, addresses: list[RedisAddress], counters: Counters, cluster: ClusterMap | None = None
) -> list[Link]:
    """An ingest and a read connection to each node (``addresses[i]`` is node i of
    ``shards``), published into ``shards`` and reconnected while they are down.
    Raises what the first connections raised, leaving nothing open."""
    links: list[Link] = []
    for node, address in enumerate(addresses):
        links += node_links(shards, node, address, counters, cluster)
    try:
        for link in links:
            await link.connect()
    except BaseException:
        for link in links:
            link.close()
        raise
    return links


def node_links(
    shards: Shards, node: int, address: RedisAddress, counters: Counters, cluster: ClusterMap | None
) -> list[Link]:
    """The ingest, durable ingest and read links of one node (not connected yet)."""
    ingest = functools.partial(RedisPipe, counters)
    # While its barrier waits for a disk or replicas, writes pile up behind it.
    durable = functools.partial(
        RedisPipe, counters, high_water=DURABLE_HIGH_WATER, low_water=DURABLE_LOW_WATER
    )
    reads = functools.partial(StreamReader, counters)
    links: list[Link] = []
    for factory, role, publish in (
        (ingest, "ingest", shards.set_pipe),
        (durable, "durable ingest", shards.set_durable_pipe),
        (reads, "read", shards.set_reader),
    ):
        if cluster is not None:
            # Ingest commands a node did not execute are sent again where they belong;
            # a durable write is not (its barrier is the first node's).
            resend = cluster.resender.resend if role == "ingest" and cluster.resender else None
            factory = with_redirect(factory, cluster.redirected, resend)  # type: ignore[assignment]
        links.append(RedisLink(address, factory, role, functools.partial(publish, node), counters=counters))
    return links


def watch_cluster(
    cluster: ClusterMap, shards: Shards, links: list[Link], pulls: PullHub, counters: Counters
) -> None:
    """Keep the process's connections on the cluster's masters as the map changes."""

    def node_added(node: int, address: RedisAddress) -> None:
        added = node_links(shards, node, address, counters, cluster)
        for link in added:
            link.start()
        links.extend(added)
        pulls.add_node(address)

    def master_moved(node: int) -> None:
        address = cluster.nodes[node].address
        for link in links:
            if link.address is address:
                link.reconnect()
        pulls.master_moved(node)

    cluster.on_node_added = node_added
    cluster.on_master_moved = master_moved
    cluster.on_slots_moved = pulls.remap
    cluster.start()
    if cluster.resender is not None:
        cluster.resender.start()
