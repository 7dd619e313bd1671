"""Prometheus metrics of the engine, read at scrape time: the hot paths only
add to C fields of engine._core.Counters, and nothing here runs per entry or
per message.

Every sample carries the ``pid`` of its process. With ``--workers N`` a
scrape reaches one worker, so each worker shares its figures every
SHARE_SECONDS through Redis (one small key per worker, expiring when it
stops) and a scrape reports every worker of the host and port: the worker
that answers with its figures of now, the others with theirs of at most
SHARE_SECONDS ago.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from engine.runtime import Runtime

log = logging.getLogger("engine")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHARE_SECONDS = 2.0
SHARE_KEY_PREFIX = "ptg-engine:metrics:"
# Normal, going away, protocol error, bad data, policy, too big, internal error.
SENT_CLOSE_CODES = (1000, 1001, 1002, 1007, 1008, 1009, 1011)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# Counters.snapshot() name -> (metric name without _total, help).
COUNTERS = {
    "push_messages": (
        "ptg_push_messages",
        "WebSocket messages producers sent (a batch is two: header and blob)",
    ),
    "push_entries": ("ptg_push_entries", "Entries Redis confirmed for producers"),
    "push_bytes": ("ptg_push_bytes", "Payload bytes of producer messages stored whole"),
    "push_acks": ("ptg_push_acks", "Acks written to producers"),
    "producer_pauses": ("ptg_producer_pauses", "Times a producer socket paused while Redis caught up"),
    "redis_replies": ("ptg_redis_replies", "Replies from Redis on the engine's fast connections"),
    "redis_errors": ("ptg_redis_errors", "Error replies from Redis"),
    "redis_reconnects": ("ptg_redis_reconnects", "Redis connections restored after they were lost"),
    "redis_resends": (
        "ptg_redis_resends",
        "Commands a Redis Cluster redirected (MOVED, ASK) or refused for now (TRYAGAIN, CLUSTERDOWN), sent again",
    ),
    "pull_steps": ("ptg_pull_steps", "Steps (header and entries) sent to pull sockets"),
    "pull_entries": ("ptg_pull_entries", "Entries sent to pull sockets"),
    "pull_bytes": ("ptg_pull_bytes", "Payload bytes sent to pull sockets"),
    "pull_catch_up_reads": ("ptg_pull_catch_up_reads", "Reads a pull socket behind its feed made itself"),
    "feed_reads": ("ptg_feed_reads", "XREADs of followed streams"),
    "feed_entries": ("ptg_feed_entries", "Entries those reads brought"),
    "notifications": ("ptg_keyspace_notifications", "Keyspace notifications of followed streams received"),
}


# Upper bounds (seconds) of the HTTP request duration buckets.
HTTP_DURATION_LE = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Requests that matched no route share one label: a scanner cannot grow the series.
UNMATCHED_ROUTE = "unmatched"


class RequestStats:
    """This process's HTTP requests: a count by route template, method and status,
    and a duration histogram by route and method. One dict update per request."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        # (route, method) -> [count per bucket (one more: above the last), sum of seconds]
        self.durations: dict[tuple[str, str], list[float]] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.durations.get((route, method))
        if histogram is None:
            histogram = self.durations[(route, method)] = [0.0] * (len(HTTP_DURATION_LE) + 2)
        histogram[bisect.bisect_left(HTTP_DURATION_LE, seconds)] += 1
        histogram[-1] += seconds

    def as_data(self) -> dict[str, list[list[Any]]]:
        """Plain lists, as a worker shares them."""
        return {
            "requests": [[*key, count] for key, count in self.requests.items()],
            "durations": [[*key, histogram] for key, histogram in self.durations.items()],
        }


def histogram_buckets(bounds: Iterable[float], counts: list[float]) -> list[tuple[str, float]]:
    """Prometheus' cumulative buckets from per-bucket ``counts`` (one more than
    ``bounds``: above the last)."""
    buckets, total = [], 0.0
    for bound, count in zip([*bounds, float("inf")], counts, strict=False):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
    return buckets


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def sample(runtime: Runtime) -> dict[str, Any]:
    """This process's figures now, as plain data (what a worker shares)."""
    snapshot = runtime.counters.snapshot()
    times = os.times()
    return {
        "pid": os.getpid(),
        "counters": {field: snapshot[field] for field in COUNTERS},
        "closes": {str(code): count for code, count in snapshot["closes"].items()},
        "push_sockets": snapshot["push_sockets"],
        "pull_sockets": snapshot["pull_sockets"],
        "followed_streams": len(runtime.pulls.feeds),
        "redis_in_flight_bytes": sum(link.in_flight_bytes() for link in runtime.links),
        "redis_connections_up": runtime.redis_connections_up(),
        "cpu_seconds": times.user + times.system,
        "resident_bytes": resident_bytes(),
        "ack_latency": snapshot["ack_latency"],
        "http": runtime.http_stats.as_data(),
        "streams": runtime.counters.streams.snapshot() if runtime.counters.streams is not None else {},
    }


class RuntimeCollector(Collector):
    """This process's figures now, and those the other workers shared."""

    def __init__(self, runtime: Runtime, share: MetricsShare | None):
        self.runtime = runtime
        self.share = share

    def collect(self) -> Iterator[Metric]:
        samples = [sample(self.runtime), *(self.share.peers if self.share else [])]
        for field, (name, text) in COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=["pid"])
            for one in samples:
                family.add_metric([str(one["pid"])], float(one["counters"][field]))
            yield family
        closes = CounterMetricFamily(
            "ptg_ws_closes",
            "WebSocket closes the engine sent, by close code (0: any other)",
            labels=["pid", "code"],
        )
        for one in samples:
            # The codes the engine sends, at zero too: a series that appears only
            # at the first close makes rate() miss it.
            counts = {str(code): 0 for code in SENT_CLOSE_CODES} | one["closes"]
            for code, count in sorted(counts.items()):
                closes.add_metric([str(one["pid"]), code], float(count))
        yield closes
        sockets = GaugeMetricFamily("ptg_sockets", "Open WebSockets by kind", labels=["pid", "kind"])
        for one in samples:
            sockets.add_metric([str(one["pid"]), "push"], float(one["push_sockets"]))
            sockets.add_metric([str(one["pid"]), "pull"], float(one["pull_sockets"]))
        yield sockets
        gauges = (
            ("ptg_followed_streams", "Streams the process follows for pull sockets", "followed_streams"),
            (
                "ptg_redis_in_flight_bytes",
                "Payload bytes sent to Redis and not yet answered",
                "redis_in_flight_bytes",
            ),
            ("ptg_redis_connections_up", "Engine connections to Redis that are up", "redis_connections_up"),
            ("process_resident_memory_bytes", "Resident memory of the process, bytes", "resident_bytes"),
        )
        for name, text, field in gauges:
            gauge = GaugeMetricFamily(name, text, labels=["pid"])
            for one in samples:
                gauge.add_metric([str(one["pid"])], float(one[field]))
            yield gauge
        cpu = CounterMetricFamily(
            "process_cpu_seconds", "CPU time of the process, user and system, seconds", labels=["pid"]
        )
        for one in samples:
            cpu.add_metric([str(one["pid"])], float(one["cpu_seconds"]))
        yield cpu
        acks = HistogramMetricFamily(
            "ptg_push_ack_latency_seconds",
            "From a producer's message arriving to its ack being written, seconds",
            labels=["pid"],
        )
        for one in samples:
            latency = one.get("ack_latency")  # None in a worker's figures from an older version
            if latency is None:
                continue
            acks.add_metric(
                [str(one["pid"])], histogram_buckets(latency["le"], latency["counts"]), latency["sum"]
            )
        yield acks
        yield from http_families(samples)
        if self.runtime.counters.streams is not None:
            yield from stream_families(samples)


def stream_families(samples: list[dict[str, Any]]) -> Iterator[Metric]:
    entries = CounterMetricFamily(
        "ptg_stream_entries", "Entries stored per stream (--metrics-streams)", labels=["pid", "stream"]
    )
    payload = CounterMetricFamily(
        "ptg_stream_bytes", "Payload bytes stored per stream (--metrics-streams)", labels=["pid", "stream"]
    )
    for one in samples:
        for stream, (count, nbytes) in one.get("streams", {}).items():
            entries.add_metric([str(one["pid"]), stream], float(count))
            payload.add_metric([str(one["pid"]), stream], float(nbytes))
    yield entries
    yield payload


def http_families(samples: list[dict[str, Any]]) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "ptg_http_requests",
        f"HTTP requests by route template ({UNMATCHED_ROUTE}: no route), method and status",
        labels=["pid", "route", "method", "status"],
    )
    durations = HistogramMetricFamily(
        "ptg_http_request_duration_seconds",
        "HTTP request durations by route template and method, until the response is sent, seconds",
        labels=["pid", "route", "method"],
    )
    for one in samples:
        pid = str(one["pid"])
        http = one.get("http", {})
        for route, method, status, count in http.get("requests", []):
            requests.add_metric([pid, route, method, status], float(count))
        for route, method, histogram in http.get("durations", []):
            durations.add_metric(
                [pid, route, method], histogram_buckets(HTTP_DURATION_LE, histogram[:-1]), histogram[-1]
            )
    yield requests
    yield durations


class MetricsShare:
    """A worker's figures in Redis every SHARE_SECONDS (expiring after a few
    missed), and the other workers' of the same host and port for a scrape."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        # One hash tag per host and port: on a cluster the keys share a slot.
        self.prefix = f"{SHARE_KEY_PREFIX}{{{socket.gethostname()}:{runtime.config.port}}}:"
        self.key = f"{self.prefix}{os.getpid()}"
        self.peers: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._share_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.runtime.control.delete(self.key)

    async def _share_forever(self) -> None:
        while True:
            try:
                await self.runtime.control.set(
                    self.key, orjson.dumps(sample(self.runtime)), ex=int(5 * SHARE_SECONDS)
                )
            except (RedisError, OSError) as error:
                log.debug("cannot share this worker's metrics: %s", error)
            await asyncio.sleep(SHARE_SECONDS)

    async def refresh(self) -> None:
        """Read what the other workers shared (before a scrape is rendered)."""
        control = self.runtime.control
        try:
            keys = [key async for key in control.scan_iter(match=self.prefix + "*", count=100)]
            keys = [key for key in keys if key.decode() != self.key]
            values = await control.mget(keys) if keys else []
        except (RedisError, OSError) as error:
            log.debug("cannot read the other workers' metrics: %s", error)
            self.peers = []
            return
        self.peers = [orjson.loads(value) for value in values if value]


class Metrics:
    """The registry of one process."""

    def __init__(self, runtime: Runtime, share: MetricsShare | None = None):
        self.share = share
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RuntimeCollector(runtime, share))

    async def render(self) -> bytes:
        if self.share is not None:
            await self.share.refresh()
        return generate_latest(self.registry)
