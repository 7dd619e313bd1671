"""Loader processes: each opens its share of the connections, waits for a common
start time, sends for the run's duration, drains, and reports what it sent."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from typing import Any

from bench.plan import ConnectionResult, LoadPlan, LoadSession

# Time the parent gives every loader between "go" and the common start.
START_MARGIN = 0.05


@dataclass
class WorkerResult:
    connections: list[ConnectionResult] = field(default_factory=list)
    cpu_seconds: float = 0.0  # this process, from the common start to drained
    started: float = 0.0  # time.monotonic() (system-wide on Linux)
    stopped_sending: float = 0.0
    drained: float = 0.0
    error: str | None = None


def _sessions(plan: LoadPlan) -> list[LoadSession]:
    if plan.mode == "post-data":
        from bench.http_post import PostProducer

        return [PostProducer(plan, sid) for sid in plan.sids]
    from bench.ws_push import PushProducer

    return [PushProducer(plan, sid) for sid in plan.sids]


class _Readiness:
    """Tells the parent once: ready (None) or why not."""

    def __init__(self, channel: Any):
        self.channel = channel
        self.told = False

    def tell(self, problem: str | None) -> None:
        if not self.told:
            self.told = True
            self.channel.put(problem)


async def _run(plan: LoadPlan, ready: _Readiness, go: Event, start_at: Any) -> WorkerResult:
    sessions = _sessions(plan)
    try:
        await asyncio.gather(*(session.connect() for session in sessions))
    except Exception as error:
        problem = f"connect failed: {type(error).__name__}: {error}"
        ready.tell(problem)
        for session in sessions:
            await session.close()
        return WorkerResult(error=problem)
    ready.tell(None)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait, 120.0)
    started = float(start_at.value)
    if started <= 0:
        for session in sessions:
            await session.close()
        return WorkerResult(error="aborted before the start")
    await asyncio.sleep(max(0.0, started - time.monotonic()))
    cpu_before = time.process_time()
    await asyncio.gather(*(session.send_until(started + plan.duration) for session in sessions))
    stopped = time.monotonic()
    deadline = stopped + plan.drain_timeout
    await asyncio.gather(*(session.drain(deadline) for session in sessions))
    drained = time.monotonic()
    cpu = time.process_time() - cpu_before
    await asyncio.gather(*(session.close() for session in sessions))
    return WorkerResult(
        connections=[session.result() for session in sessions],
        cpu_seconds=cpu,
        started=started,
        stopped_sending=stopped,
        drained=drained,
    )


def worker_main(plan: LoadPlan, ready: Any, go: Event, start_at: Any, results: Any) -> None:
    """Entry point of a spawned loader process."""
    import uvloop

    readiness = _Readiness(ready)
    try:
        result = uvloop.run(_run(plan, readiness, go, start_at))
    except BaseException as error:  # reported to the parent, which decides
        result = WorkerResult(error=f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        readiness.tell(result.error)
    results.put(result)


def split_connections(sids: list[str], processes: int) -> list[tuple[str, ...]]:
    """Connections spread round-robin over the loader processes (none left empty)."""
    processes = max(1, min(processes, len(sids)))
    return [tuple(sids[i::processes]) for i in range(processes)]


def run_loaders(
    plans: list[LoadPlan],
    on_start: Callable[[float], None],
    connect_timeout: float = 60.0,
) -> list[WorkerResult]:
    """Spawn one process per plan, start them together, and collect their results.

    ``on_start(t0)`` runs just before the common start time ``t0`` is released.
    """
    context = mp.get_context("spawn")  # no fork: the parent has threads and sockets
    ready: Any = context.Queue()
    results: Any = context.Queue()
    go = context.Event()
    start_at: Any = context.Value("d", 0.0)
    processes = [
        context.Process(target=worker_main, args=(plan, ready, go, start_at, results), daemon=True)
        for plan in plans
    ]
    for process in processes:
        process.start()
    try:
        problems = []
        for _ in plans:
            try:
                problem = ready.get(timeout=connect_timeout)
            except queue.Empty:
                problem = f"a loader was not ready within {connect_timeout:.0f} s"
            if problem:
                problems.append(problem)
                break
        if problems:
            start_at.value = -1.0
            go.set()
            raise RuntimeError("; ".join(problems))
        t0 = time.monotonic() + START_MARGIN
        on_start(t0)
        start_at.value = t0
        go.set()
        longest = max(plan.duration + plan.drain_timeout for plan in plans) + 30.0
        collected: list[WorkerResult] = []
        for _ in plans:
            try:
                collected.append(results.get(timeout=longest))
            except queue.Empty:
                collected.append(WorkerResult(error="a loader did not report in time"))
        return collected
    finally:
        for process in processes:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(5.0)
