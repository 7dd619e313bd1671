"""Prometheus metrics of one engine process, read from its runtime at scrape
time: the hot paths only add to C fields of engine._core.Counters, and
nothing here runs per entry or per message.

Every sample carries the process's ``pid``: with ``--workers N`` a scrape
reaches one worker, and Prometheus keeps one series per worker it has seen
(sum them with ``sum without (pid)``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Normal, going away, protocol error, bad data, policy, too big, internal error.
SENT_CLOSE_CODES = (1000, 1001, 1002, 1007, 1008, 1009, 1011)

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
    "pull_steps": ("ptg_pull_steps", "Steps (header and entries) sent to pull sockets"),
    "pull_entries": ("ptg_pull_entries", "Entries sent to pull sockets"),
    "pull_bytes": ("ptg_pull_bytes", "Payload bytes sent to pull sockets"),
    "pull_catch_up_reads": ("ptg_pull_catch_up_reads", "Reads a pull socket behind its feed made itself"),
    "feed_reads": ("ptg_feed_reads", "XREADs of followed streams"),
    "feed_entries": ("ptg_feed_entries", "Entries those reads brought"),
    "notifications": ("ptg_keyspace_notifications", "Keyspace notifications of followed streams received"),
}


class RuntimeCollector(Collector):
    """Reads the runtime's counters and state when Prometheus scrapes."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.pid = str(os.getpid())

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        snapshot = runtime.counters.snapshot()
        for field, (name, text) in COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=["pid"])
            family.add_metric([self.pid], float(snapshot[field]))
            yield family
        closes = CounterMetricFamily(
            "ptg_ws_closes",
            "WebSocket closes the engine sent, by close code (0: any other)",
            labels=["pid", "code"],
        )
        # The codes the engine sends, at zero too: a series that appears only at
        # the first close makes rate() miss it.
        counts = dict.fromkeys(SENT_CLOSE_CODES, 0) | snapshot["closes"]
        for code, count in sorted(counts.items()):
            closes.add_metric([self.pid, str(code)], float(count))
        yield closes
        sockets = GaugeMetricFamily("ptg_sockets", "Open WebSockets by kind", labels=["pid", "kind"])
        sockets.add_metric([self.pid, "push"], float(snapshot["push_sockets"]))
        sockets.add_metric([self.pid, "pull"], float(snapshot["pull_sockets"]))
        yield sockets
        followed = GaugeMetricFamily(
            "ptg_followed_streams", "Streams this process follows for pull sockets", labels=["pid"]
        )
        followed.add_metric([self.pid], float(len(runtime.pulls.feeds)))
        yield followed
        in_flight = GaugeMetricFamily(
            "ptg_redis_in_flight_bytes", "Payload bytes sent to Redis and not yet answered", labels=["pid"]
        )
        in_flight.add_metric([self.pid], float(sum(link.in_flight_bytes() for link in runtime.links)))
        yield in_flight
        up = GaugeMetricFamily(
            "ptg_redis_connections_up", "Engine connections to Redis that are up", labels=["pid"]
        )
        up.add_metric([self.pid], float(sum(link.connection is not None for link in runtime.links)))
        yield up


class Metrics:
    """The registry of one process: its runtime's metrics and its own CPU and memory."""

    def __init__(self, runtime: Runtime):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RuntimeCollector(runtime))
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
