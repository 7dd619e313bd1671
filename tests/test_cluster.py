"""The engine in front of a Redis Cluster that changes under it: slots moved
with `redis-cli --cluster reshard` while producers push with acks, and a
master killed (-9) under acked load. A cluster and an engine of this module's
own, since both tests change the cluster."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from engine.launcher import EngineProcess
from engine.redis.local_cluster import LocalCluster
from tests.pulling import collect, connect

# How long a producer waits after its socket closed before it connects again.
RECONNECT_SECONDS = 0.1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("moving-cluster")).start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def cluster_engine(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineProcess]:
    server = EngineProcess(
        Path(tmp_path_factory.mktemp("cluster-engine")),
        cluster.url,
        ["--log-level", "info", "--max-len", "10000000"],
    )
    server.start()
    yield server
    server.stop()


def slot_of(client: redis.Redis, key: str) -> int:
    return int(client.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]


def node_id(port: int) -> str:
    client = redis.Redis(port=port)
    try:
        return str(client.execute_command("CLUSTER", "MYID").decode())  # type: ignore[no-untyped-call]
    finally:
        client.close()


class Producer:
    """Pushes numbered entries with acks, one in flight; after its socket closes it
    connects again and sends the unacked entry again (what the protocol tells
    clients to do)."""

    def __init__(self, url: str, sid: str):
        self.url = url
        self.sid = sid
        self.acked: dict[int, str] = {}  # entry number -> entry id
        self.closes: list[str] = []
        self.running = True

    async def run(self) -> None:
        number = 0
        while self.running:
            try:
                async with websockets.connect(self.url) as ws:
                    while self.running:
                        await ws.send(b"%08d" % number)
                        self.acked[number] = str(await asyncio.wait_for(ws.recv(), 10))
                        number += 1
            except (ConnectionClosed, InvalidHandshake, InvalidStatus, OSError, TimeoutError) as error:
                self.closes.append(str(error))
                await asyncio.sleep(RECONNECT_SECONDS)

    def check(self, store: redis.RedisCluster) -> tuple[list[int], list[int]]:
        """Acked numbers missing from the stream, and numbers stored more than once."""
        numbers = [int(fields[b"d"]) for _, fields in store.xrange(self.sid)]
        missing = sorted(set(self.acked) - set(numbers))
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        return missing, twice


def streams_in_slots(client: redis.Redis, first: int, last: int, count: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        sid = f"moving-{uuid.uuid4().hex[:8]}"
        if first <= slot_of(client, sid) <= last:
            found.append(sid)
    return found


async def test_streams_resharded_under_acked_pushes_lose_nothing(
    cluster: LocalCluster, cluster_engine: EngineProcess
) -> None:
    if cluster.cli is None:
        pytest.skip("resharding needs redis-cli (Debian: apt-get install redis-tools)")
    store = redis.RedisCluster.from_url(cluster.url)
    token = cluster_engine.token()
    some_node = redis.Redis(port=cluster.ports[0])
    # redis-cli takes the lowest slots of the source first: streams in them move.
    sids = streams_in_slots(some_node, 0, 40, 4)
    source = cluster.master_of(sids[0])
    target = next(port for port in cluster.master_ports() if port != source)
    producers = [
        Producer(f"{cluster_engine.ws_url}/data/{sid}/push?token={token}&ack=true", sid) for sid in sids
    ]
    follower = await connect(cluster_engine.ws_url, token, sids[0], latest="false", count=1000)
    tasks = [asyncio.create_task(p.run()) for p in producers]
    await asyncio.sleep(1.0)
    before = {p.sid: len(p.acked) for p in producers}
    resharding = await asyncio.create_subprocess_exec(
        cluster.cli, "--cluster", "reshard", f"127.0.0.1:{source}",
        "--cluster-from", node_id(source), "--cluster-to", node_id(target),
        "--cluster-slots", "200", "--cluster-yes",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, errors = await resharding.communicate()
    assert resharding.returncode == 0, errors.decode()
    assert all(cluster.master_of(sid) == target for sid in sids)
    # Pushes go on to the new master.
    moved_at = {p.sid: len(p.acked) for p in producers}
    await asyncio.sleep(1.5)
    for producer in producers:
        producer.running = False
    await asyncio.gather(*tasks)
    for producer in producers:
        assert len(producer.acked) > moved_at[producer.sid] > before[producer.sid]
        missing, twice = producer.check(store)
        assert missing == [] and twice == [], (producer.sid, missing[:10], twice, producer.closes)
        # Refused XADDs were sent again on the new master: no producer had to reconnect.
        assert producer.closes == []
    # The stream's follower saw every entry, before and after its slot moved.
    stored_ids = [entry_id.decode() for entry_id, _ in store.xrange(sids[0])]
    try:
        got = await collect(follower, len(stored_ids), timeout=20)
        assert [entry_id for _, entry_id, _ in got] == stored_ids
    finally:
        await follower.close()
        store.close()
        some_node.close()


class PipelinedProducer:
    """Pushes numbered entries with acks, up to WINDOW in flight, so that some are
    always on their way when a slot changes hands."""

    WINDOW = 64

    def __init__(self, url: str):
        self.url = url
        self.sent = 0
        self.acks: list[str] = []
        self.running = True

    async def run(self) -> None:
        async with websockets.connect(self.url) as ws:
            reading = asyncio.create_task(self._read_acks(ws))
            while self.running:
                if self.sent - len(self.acks) < self.WINDOW:
                    await ws.send(b"%08d" % self.sent)
                    self.sent += 1
                    if self.sent % 16 == 0:
                        await asyncio.sleep(0.001)
                else:
                    await asyncio.sleep(0.001)
            while len(self.acks) < self.sent:
                assert not reading.done(), reading.exception()
                await asyncio.sleep(0.01)
            reading.cancel()

    async def _read_acks(self, ws: websockets.ClientConnection) -> None:
        while True:
            self.acks.append(str(await asyncio.wait_for(ws.recv(), 10)))


def resends(engine: EngineProcess) -> float:
    with urllib.request.urlopen(f"{engine.base_url}/metrics") as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ptg_redis_resends_total"
    )


async def move_slot_by_hand(cluster: LocalCluster, slot: int, source: int, target: int) -> None:
    """MIGRATING/IMPORTING (pushes go on to the source), MIGRATE of its keys (the
    source answers ASK), SETSLOT NODE on every master (MOVED), with pauses
    between for pushes to meet each state."""
    old, new = redis.Redis(port=source), redis.Redis(port=target)
    new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", node_id(source))  # type: ignore[no-untyped-call]
    old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", node_id(target))  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.3)
    keys = old.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)  # type: ignore[no-untyped-call]
    old.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.4)
    for port in (target, source, *[p for p in cluster.master_ports() if p not in (source, target)]):
        with redis.Redis(port=port) as node:
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id(target))  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.5)
    old.close()
    new.close()


async def test_a_slot_moved_step_by_step_under_pipelined_pushes_closes_no_producer(
    cluster: LocalCluster, cluster_engine: EngineProcess
) -> None:
    """The slot of four live streams (one hash tag) migrates by hand, there and
    back, under four pipelined producers. The engine sends every refused XADD
    again where it belongs, and a producer whose messages in flight went by the
    old slot map waits for them: no producer is closed, every entry is stored
    once, in the order sent, under the id its ack gave."""
    store = redis.RedisCluster.from_url(cluster.url)
    tag = uuid.uuid4().hex[:8]
    sids = [f"{{step-{tag}}}-{i}" for i in range(4)]
    source = cluster.master_of(sids[0])
    target = next(port for port in cluster.master_ports() if port != source)
    with redis.Redis(port=source) as node:
        slot = slot_of(node, sids[0])
    resends_before = resends(cluster_engine)
    token = cluster_engine.token()
    producers = [
        PipelinedProducer(f"{cluster_engine.ws_url}/data/{sid}/push?token={token}&ack=true") for sid in sids
    ]
    tasks = [asyncio.create_task(producer.run()) for producer in producers]
    try:
        await asyncio.sleep(0.5)
        await move_slot_by_hand(cluster, slot, source, target)
        moved_at = [producer.sent for producer in producers]
        await move_slot_by_hand(cluster, slot, target, source)
    finally:
        for producer in producers:
            producer.running = False
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert cluster.master_of(sids[0]) == source
    for sid, producer, sent_at_move in zip(sids, producers, moved_at, strict=True):
        assert producer.sent > sent_at_move > 0
        stored = store.xrange(sid)
        assert [int(fields[b"d"]) for _, fields in stored] == list(range(producer.sent)), sid
        assert [entry_id.decode() for entry_id, _ in stored] == producer.acks
    assert resends(cluster_engine) > resends_before  # the engine did resend (ASK, MOVED)
    store.close()


async def test_pushes_wait_out_a_slot_that_no_master_serves(
    cluster: LocalCluster, cluster_engine: EngineProcess
) -> None:
    """A stream's slot is taken from its master for half a second: the master
    answers CLUSTERDOWN, and the engine tries the refused XADDs again until the
    slot is served, in order, without closing the producer."""
    store = redis.RedisCluster.from_url(cluster.url)
    sid = f"down-{uuid.uuid4().hex[:8]}"
    owner = redis.Redis(port=cluster.master_of(sid))
    slot = slot_of(owner, sid)
    resends_before = resends(cluster_engine)
    producer = PipelinedProducer(
        f"{cluster_engine.ws_url}/data/{sid}/push?token={cluster_engine.token()}&ack=true"
    )
    task = asyncio.create_task(producer.run())
    try:
        await asyncio.sleep(0.3)
        owner.execute_command("CLUSTER", "DELSLOTS", slot)  # type: ignore[no-untyped-call]
        acked_when_taken = len(producer.acks)
        await asyncio.sleep(0.5)
        owner.execute_command("CLUSTER", "ADDSLOTS", slot)  # type: ignore[no-untyped-call]
        await asyncio.sleep(0.5)
    finally:
        producer.running = False
        await asyncio.wait_for(task, 20)
    cluster.wait_until_ok()
    assert len(producer.acks) > acked_when_taken + producer.WINDOW
    stored = store.xrange(sid)
    assert [int(fields[b"d"]) for _, fields in stored] == list(range(producer.sent))
    assert [entry_id.decode() for entry_id, _ in stored] == producer.acks
    assert resends(cluster_engine) > resends_before
    store.close()
    owner.close()


def replica_of(cluster: LocalCluster) -> dict[int, int]:
    """Each master's port -> the port of a replica of it (ROLE on every node)."""
    replicas = {}
    for port in cluster.running():
        with redis.Redis(port=port) as node:
            role = node.execute_command("ROLE")  # type: ignore[no-untyped-call]
        if role[0] == b"slave":
            replicas[int(role[2])] = port
    return replicas


async def test_replicas_durability_acks_once_each_masters_replica_has_its_entries(
    cluster: LocalCluster, cluster_engine: EngineProcess
) -> None:
    """durability=replicas:1 on a cluster: one message over streams of three
    masters is acked once every master's WAIT saw a replica take its part, so
    each replica holds its entries when the ack arrives; replicas:2 (the
    cluster has one replica per master) closes 1011 without an ack."""
    tag = uuid.uuid4().hex[:8]
    by_master: dict[int, str] = {}
    while len(by_master) < 3:
        sid = f"durable-{tag}-{len(by_master)}-{uuid.uuid4().hex[:4]}"
        by_master.setdefault(cluster.master_of(sid), sid)
    sids = list(by_master.values())
    token = cluster_engine.token()
    url = f"{cluster_engine.ws_url}/data/*/push?token={token}&ack=true&offsets=start&durability=replicas:1"
    async with websockets.connect(url) as producer:
        await producer.send(json.dumps([[sid, i] for i, sid in enumerate(sids)]))
        await producer.send(b"abc")
        ids = str(await asyncio.wait_for(producer.recv(), 10)).split(",")
    replicas = replica_of(cluster)
    for (master, sid), entry_id, payload in zip(by_master.items(), ids, [b"a", b"b", b"c"], strict=True):
        with redis.Redis(port=replicas[master]) as replica:
            replica.execute_command("READONLY")  # type: ignore[no-untyped-call]
            assert replica.xrange(sid) == [(entry_id.encode(), {b"d": payload})]
    url = f"{cluster_engine.ws_url}/data/{sids[0]}/push?token={token}&ack=true&durability=replicas:2"
    async with websockets.connect(url) as producer:
        await producer.send(b"d")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(producer.recv(), 15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert "only 1 of 2 replicas" in closed.value.rcvd.reason


async def test_a_killed_master_is_replaced_and_pushes_resume(
    cluster: LocalCluster, cluster_engine: EngineProcess
) -> None:
    store = redis.RedisCluster.from_url(cluster.url)
    token = cluster_engine.token()
    sid = f"failover-{uuid.uuid4().hex[:8]}"
    doomed = cluster.master_of(sid)
    producer = Producer(f"{cluster_engine.ws_url}/data/{sid}/push?token={token}&ack=true", sid)
    task = asyncio.create_task(producer.run())
    await asyncio.sleep(1.0)
    cluster.kill(doomed)
    killed_at, acked_at_kill = time.monotonic(), len(producer.acked)
    # The replica is promoted (cluster-node-timeout 2 s), the engine reads the new map.
    while len(producer.acked) < acked_at_kill + 100:
        assert time.monotonic() - killed_at < 30, f"pushes did not resume: {producer.closes[-3:]}"
        await asyncio.sleep(0.1)
    resumed_after = time.monotonic() - killed_at
    producer.running = False
    await task
    assert cluster.master_of(sid) != doomed
    missing, twice = producer.check(store)
    # Redis replicates asynchronously: what the master acked in its last moments
    # may not have reached the replica. Reported, and bounded by what was acked.
    print(
        f"\nfailover: pushes resumed {resumed_after:.1f} s after kill -9 of the master; "
        f"{len(missing)} of {len(producer.acked)} acked entries missing, {len(twice)} stored twice"
    )
    assert len(missing) <= acked_at_kill
    assert twice == []
    store.close()


async def test_engines_in_front_of_one_cluster_serve_each_others_streams(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Two engine instances (ports stand in for hosts), one of them with two worker
    processes, sharing the token secret: a token from one works on the other,
    what is pushed to one is pulled from the other."""
    shared = ["--log-level", "warning", "--secret", "shared-between-hosts"]
    # Any node will do as the seed (a test before may have killed the first one).
    seed = cluster.node_url(cluster.running()[0])
    first = EngineProcess(tmp_path / "first", seed, [*shared, "--workers", "2"])
    second = EngineProcess(tmp_path / "second", seed, shared)
    try:
        first.start()
        second.start()
        token = first.token()
        sids = [f"hosts-{uuid.uuid4().hex[:8]}" for _ in range(6)]  # on every master, likely
        pulls = [
            await connect(second.ws_url, token, sids, latest="false"),
            await connect(first.ws_url, token, sids, latest="false"),
        ]
        await asyncio.sleep(0.3)
        header = "[" + ",".join(f'["{sid}", {3 * i}]' for i, sid in enumerate(sids)) + "]"
        push_url = f"{first.ws_url}/data/*/push?token={token}&ack=true&offsets=start"
        async with websockets.connect(push_url) as producer:
            await producer.send(header)
            await producer.send(b"".join(b"%03d" % i for i in range(len(sids))))
            ids = str(await asyncio.wait_for(producer.recv(), 10)).split(",")
        for ws in pulls:
            got = sorted(await collect(ws, len(sids), timeout=10))
            assert got == sorted(
                (sid, entry_id, b"%03d" % i) for i, (sid, entry_id) in enumerate(zip(sids, ids, strict=True))
            )
            await ws.close()
    finally:
        for engine in (first, second):
            if engine.process is not None and engine.process.poll() is None:
                engine.stop()
