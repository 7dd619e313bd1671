"""Watches a run from the side: how many entries Redis holds (every 25 ms, to
time the end of ingest) and the engine's memory (every 100 ms)."""

from __future__ import annotations

import threading
import time

import psutil

from bench.target import StreamCounter

COUNT_INTERVAL = 0.025
RSS_EVERY = 4  # count ticks per memory sample: 100 ms


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and its children (worker processes of `--workers N`), without Redis."""
    root = psutil.Process(pid)
    children = [child for child in root.children(recursive=True) if "redis" not in child.name()]
    return [root, *children]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


class RunMonitor(threading.Thread):
    """``samples`` holds (time.monotonic(), entries stored so far) from ``begin()`` on."""

    def __init__(self, counter: StreamCounter, engine_pid: int | None, redis_pids: list[int]):
        super().__init__(name="run-monitor", daemon=True)
        self.counter = counter
        self.engine = process_tree(engine_pid) if engine_pid else []
        self.redis = [psutil.Process(pid) for pid in redis_pids]  # a cluster's masters, or the one Redis
        self.samples: list[tuple[float, int]] = []
        self.rss_start = rss_bytes(self.engine)
        self.rss_peak = self.rss_start
        self.engine_cpu_start = self.redis_cpu_start = 0.0
        self.engine_cpu = self.redis_cpu = 0.0
        self.error: str | None = None
        self._stop_event = threading.Event()
        self._started_at = 0.0

    def begin(self, t0: float) -> None:
        """Called at the common start time of the loaders."""
        self.engine_cpu_start = cpu_seconds(self.engine)
        self.redis_cpu_start = cpu_seconds(self.redis)
        self._started_at = t0
        self.start()

    def run(self) -> None:
        tick = 0
        next_at = self._started_at
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now < next_at:
                self._stop_event.wait(next_at - now)
                continue
            next_at += COUNT_INTERVAL
            try:
                total = self.counter.total()
            except Exception as error:  # keep sampling memory; report it at the end
                self.error = f"cannot read stream counts: {error}"
            else:
                self.samples.append((time.monotonic(), total))
            if tick % RSS_EVERY == 0:
                self.rss_peak = max(self.rss_peak, rss_bytes(self.engine))
            tick += 1

    def latest_total(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def wait_for(self, expected: int, settle: float, timeout: float) -> None:
        """Until Redis holds ``expected`` entries, or the count stands still for ``settle`` s."""
        deadline = time.monotonic() + timeout
        last_total, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = self.latest_total()
            if total >= expected:
                return
            now = time.monotonic()
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change > settle:
                return
            time.sleep(COUNT_INTERVAL)

    def finish(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(5.0)
        self.engine_cpu = cpu_seconds(self.engine) - self.engine_cpu_start
        self.redis_cpu = cpu_seconds(self.redis) - self.redis_cpu_start
        self.rss_peak = max(self.rss_peak, rss_bytes(self.engine))

    def completed_at(self, expected: int) -> float | None:
        """When Redis first held ``expected`` entries; else when its count last grew."""
        for at, total in self.samples:
            if total >= expected:
                return at
        last_growth = None
        previous = -1
        for at, total in self.samples:
            if total != previous:
                last_growth, previous = at, total
        return last_growth
