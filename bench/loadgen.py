"""Load generator for the engine: ``python -m bench.loadgen MODE [options]``.

Modes: ``push-batch`` and ``push-single`` (WebSocket /data/{sid}/push) and
``post-data`` (multipart POST /data/{sid}). By default it starts its own
engine on a private Redis; ``--url`` and ``--redis-url`` aim it at a running
one. Every run is verified against Redis (every entry sent, or acked, is
stored, none more) and, for the push modes, compared with redis-benchmark
doing pipelined XADD of the same payload to the same Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.baseline import BaselineResult, measure_baseline
from bench.loaders import WorkerResult, run_loaders, split_connections
from bench.monitor import RunMonitor
from bench.plan import LoadPlan
from bench.target import (
    UNTRIMMED_MAX_LEN,
    ControlClient,
    OwnEngine,
    StreamCounter,
    TargetError,
    find_listener_pid,
    redis_pids_of,
    which_redis_benchmark,
)

MODES = ("push-batch", "push-single", "post-data")
DEFAULT_ENTRY_SIZE = {"push-batch": 100, "push-single": 1024, "post-data": 1024}
SERVER_DEFAULT_MAX_LEN = 1000  # the engine's --max-len default: what the baseline trims to
SINGLE_BASELINE_PIPELINE = 16
MB = 1_000_000


@dataclass(frozen=True)
class Target:
    base_url: str
    redis_url: str
    token: str
    engine_pid: int | None
    redis_pids: list[int]
    cluster: bool = False


@dataclass
class RunResult:
    run_id: str
    passed: bool
    verdict: str
    entries: int  # stored in Redis by this run
    seconds: float  # common start -> the last entry stored
    entries_per_s: float
    mb_per_s: float
    sent_entries: int
    confirmed_entries: int  # acked (push --ack) or answered 2xx (post-data)
    messages: int
    loader_cpu_s: float
    loader_processes: int
    engine_cpu_s: float | None
    engine_rss_start_mb: float | None
    engine_peak_rss_mb: float | None
    redis_cpu_s: float | None
    baseline_entries_per_s: float | None = None
    baseline_fraction: float | None = None
    baseline_command: str | None = None
    errors: list[str] = field(default_factory=list)


# -- command line ------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description="Load the engine, verify every entry in Redis, compare with redis-benchmark.",
    )
    parser.add_argument("mode", choices=MODES)
    load = parser.add_argument_group("load")
    load.add_argument("--entry-size", type=_positive_int, help="bytes per entry (100 / 1024 / 1024)")
    load.add_argument("--batch-size", type=_positive_int, default=100, help="entries per batch (push-batch)")
    load.add_argument("--parts", type=_positive_int, default=10, help="file parts per request (post-data)")
    load.add_argument("--connections", type=_positive_int, default=4)
    load.add_argument(
        "--processes", type=_positive_int, help="loader processes (default: min(connections, CPUs))"
    )
    load.add_argument(
        "--ack", action=argparse.BooleanOptionalAction, default=False, help="ack=true (push modes)"
    )
    load.add_argument("--window", type=_positive_int, default=8, help="unacked messages per socket (--ack)")
    load.add_argument(
        "--durability",
        default="memory",
        help="push sockets' ?durability= (fsync needs --persist and a Redis with WAITAOF)",
    )
    load.add_argument("--duration", type=_positive_float, default=5.0, help="seconds of sending")
    load.add_argument("--streams", type=_positive_int, help="distinct streams (default: one per connection)")
    load.add_argument("--max-len", type=_positive_int, help="set this max_len metadata on the bench streams")
    load.add_argument("--repeat", type=_positive_int, default=1, help="runs; the median is reported")
    load.add_argument("--drain-timeout", type=_positive_float, default=30.0)
    load.add_argument(
        "--settle",
        type=_positive_float,
        default=2.0,
        help="stop waiting for Redis after it stood still this long",
    )
    base = parser.add_argument_group("baseline")
    base.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run redis-benchmark XADD too (default: on for push modes)",
    )
    base.add_argument(
        "--baseline-pipeline", type=_positive_int, help="default: batch size, 16 single, parts post"
    )
    base.add_argument("--baseline-seconds", type=_positive_float, help="default: min(duration, 3)")
    target = parser.add_argument_group("target")
    target.add_argument("--url", help="a running engine, http://host:port (needs --redis-url)")
    target.add_argument("--redis-url", help="the Redis the engine at --url writes to")
    target.add_argument("--token", help="a token for --url (default: dev-mode login bench:bench)")
    target.add_argument(
        "--engine-pid", type=int, help="pid to sample for --url (default: the port's listener)"
    )
    target.add_argument(
        "--redis-server", help="redis-server binary for the own engine (default: a Redis 7 on PATH)"
    )
    target.add_argument("--engine-workers", type=_positive_int, help="--workers of the own engine")
    target.add_argument(
        "--cluster",
        type=_positive_int,
        default=0,
        metavar="MASTERS",
        help="the own engine in front of a local Redis Cluster of this many masters (no replicas); "
        "the baseline is redis-benchmark --cluster",
    )
    target.add_argument(
        "--persist",
        action="store_true",
        help="the own Redis writes its append-only file (default off: measure Redis's CPU limit, "
        "not the disk; the engine's embedded Redis always persists)",
    )
    target.add_argument("--keep-streams", action="store_true", help="do not delete the bench streams")
    parser.add_argument("--json", action="store_true", help="print one JSON result line")
    return parser


def _settle_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.entry_size is None:
        args.entry_size = DEFAULT_ENTRY_SIZE[args.mode]
    if args.processes is None:
        args.processes = min(args.connections, os.cpu_count() or 1)
    if args.streams is None:
        args.streams = args.connections
    if args.baseline is None:
        args.baseline = args.mode != "post-data"
    if args.baseline_pipeline is None:
        args.baseline_pipeline = {
            "push-batch": args.batch_size,
            "push-single": SINGLE_BASELINE_PIPELINE,
            "post-data": args.parts,
        }[args.mode]
    if args.baseline_seconds is None:
        args.baseline_seconds = min(args.duration, 3.0)
    if args.url and not args.redis_url:
        parser.error("--url needs --redis-url (the counts are verified in Redis)")
    if args.mode == "post-data" and args.ack:
        parser.error("--ack is for the push modes (every POST is answered)")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- one run -------------------------------------------------------------------


def entries_per_message(args: argparse.Namespace) -> int:
    if args.mode == "push-batch":
        return int(args.batch_size)
    return int(args.parts) if args.mode == "post-data" else 1


def _verify(
    args: argparse.Namespace, results: list[WorkerResult], stored: dict[str, int]
) -> tuple[bool, str, dict[str, int], list[str]]:
    """(passed, verdict, expected per stream, errors)."""
    confirmed_mode = args.ack or args.mode == "post-data"
    expected = dict.fromkeys(stored, 0)
    errors = [result.error for result in results if result.error]
    for result in results:
        for conn in result.connections:
            expected[conn.sid] += conn.confirmed_entries if confirmed_mode else conn.sent_entries
            if conn.error:
                errors.append(f"{conn.sid}: {conn.error}")
            if conn.bad_confirmations:
                what = "acks" if args.mode != "post-data" else "answers"
                errors.append(f"{conn.sid}: {conn.bad_confirmations} {what} did not list one id per entry")
    what = "acked" if args.ack else ("confirmed (2xx)" if args.mode == "post-data" else "sent")
    total_stored = sum(stored.values())
    wrong = [
        f"{sid}: stored {stored[sid]:,}, {what} {expected[sid]:,}"
        for sid in stored
        if stored[sid] != expected[sid]
    ]
    if wrong:
        return False, "FAIL: " + "; ".join(wrong[:4] + errors[:4]), expected, errors
    if total_stored == 0:
        return False, "; ".join(["FAIL: nothing was stored", *errors[:4]]), expected, errors
    if errors:
        return (
            False,
            f"FAIL: counts match ({total_stored:,} entries) but: " + "; ".join(errors[:4]),
            expected,
            errors,
        )
    return (
        True,
        f"PASS: Redis holds exactly the {total_stored:,} entries the loader {what} ({len(stored)} streams)",
        expected,
        errors,
    )


def run_once(args: argparse.Namespace, target: Target) -> RunResult:
    run_id = secrets.token_hex(3)
    sids = [f"bench-{run_id}-{i}" for i in range(args.streams)]
    per_connection = [sids[i % len(sids)] for i in range(args.connections)]
    control = ControlClient(target.base_url, target.token)
    counter = StreamCounter(target.redis_url, sids)
    max_len = args.max_len or (UNTRIMMED_MAX_LEN if counter.needs_untrimmed else None)
    try:
        if max_len:
            for sid in sids:
                control.set_meta(sid, {"max_len": max_len})
        counter.start()
        monitor = RunMonitor(counter, target.engine_pid, target.redis_pids)
        plans = [
            LoadPlan(
                mode=args.mode,
                base_url=target.base_url,
                token=target.token,
                sids=group,
                entry_size=args.entry_size,
                entries_per_message=entries_per_message(args),
                ack=args.ack,
                window=args.window,
                duration=args.duration,
                drain_timeout=args.drain_timeout,
                seed=index,
                durability=args.durability,
            )
            for index, group in enumerate(split_connections(per_connection, args.processes))
        ]
        try:
            results = run_loaders(plans, monitor.begin)
            sent = sum(c.sent_entries for r in results for c in r.connections)
            confirmed = sum(c.confirmed_entries for r in results for c in r.connections)
            awaited = confirmed if (args.ack or args.mode == "post-data") else sent
            monitor.wait_for(awaited, args.settle, args.drain_timeout)
        finally:
            monitor.finish()
        stored = counter.counts()
        passed, verdict, expected, errors = _verify(args, results, stored)
        if monitor.error:
            errors.append(monitor.error)
        total = sum(stored.values())
        t0 = min(r.started for r in results if r.started) if any(r.started for r in results) else 0.0
        done_at = monitor.completed_at(sum(expected.values())) or max(r.drained for r in results)
        seconds = max(done_at - t0, 1e-9) if t0 else 0.0
        rate = total / seconds if seconds else 0.0
        has_engine = target.engine_pid is not None
        result = RunResult(
            run_id=run_id,
            passed=passed,
            verdict=verdict,
            entries=total,
            seconds=seconds,
            entries_per_s=rate,
            mb_per_s=rate * args.entry_size / MB,
            sent_entries=sent,
            confirmed_entries=confirmed,
            messages=sum(c.messages for r in results for c in r.connections),
            loader_cpu_s=sum(r.cpu_seconds for r in results),
            loader_processes=len(plans),
            engine_cpu_s=monitor.engine_cpu if has_engine else None,
            engine_rss_start_mb=monitor.rss_start / MB if has_engine else None,
            engine_peak_rss_mb=monitor.rss_peak / MB if has_engine else None,
            redis_cpu_s=monitor.redis_cpu if target.redis_pids else None,
            errors=errors,
        )
    finally:
        counter.close()
        if not args.keep_streams:
            try:
                control.delete_streams(sids)
            except TargetError as error:
                _log(f"warning: cannot delete the bench streams: {error}")
    if args.baseline:
        _add_baseline(args, target, run_id, max_len, result)
    return result


def _add_baseline(
    args: argparse.Namespace, target: Target, run_id: str, max_len: int | None, result: RunResult
) -> None:
    binary = which_redis_benchmark()
    if binary is None:
        result.errors.append("baseline skipped: redis-benchmark is not on PATH")
        return
    try:
        baseline: BaselineResult = measure_baseline(
            binary,
            target.redis_url,
            key=f"bench-{run_id}-rb",
            entry_size=args.entry_size,
            max_len=max_len or SERVER_DEFAULT_MAX_LEN,
            pipeline=args.baseline_pipeline,
            clients=args.connections,
            seconds=args.baseline_seconds,
            rate_hint=max(result.entries_per_s, 1000.0),
            cluster=target.cluster,
        )
    except (RuntimeError, ValueError, OSError) as error:
        result.errors.append(f"baseline failed: {error}")
        return
    result.baseline_entries_per_s = baseline.entries_per_s
    result.baseline_fraction = (
        result.entries_per_s / baseline.entries_per_s if baseline.entries_per_s else None
    )
    result.baseline_command = baseline.command


# -- targets -------------------------------------------------------------------


@contextmanager
def open_target(args: argparse.Namespace) -> Iterator[Target]:
    if args.url:
        control = ControlClient(args.url, args.token)
        token = args.token or control.login()
        port = urllib.parse.urlsplit(args.url).port
        engine_pid = args.engine_pid or (find_listener_pid(port) if port else None)
        yield Target(args.url.rstrip("/"), args.redis_url, token, engine_pid, redis_pids_of(args.redis_url))
        return
    with tempfile.TemporaryDirectory(prefix="loadgen-") as workdir:
        extra = ["--workers", str(args.engine_workers)] if args.engine_workers else []
        engine = OwnEngine(
            Path(workdir), args.redis_server, extra, persistent=args.persist, cluster_masters=args.cluster
        )
        with engine:
            _log(f"started an engine at {engine.base_url} with {engine.redis_binary}")
            token = ControlClient(engine.base_url).login()
            yield Target(
                engine.base_url,
                engine.redis_url,
                token,
                engine.pid,
                engine.redis_pids,
                cluster=bool(args.cluster),
            )


# -- reporting -----------------------------------------------------------------


def describe_load(args: argparse.Namespace) -> str:
    if args.mode == "push-batch":
        shape = f"{args.entry_size} B entries x {args.batch_size} per batch"
    elif args.mode == "push-single":
        shape = f"{args.entry_size} B entries, one per message"
    else:
        shape = f"{args.parts} parts of {args.entry_size} B per request"
    ack = f"ack on (window {args.window})" if args.ack else "ack off"
    if args.mode == "post-data":
        ack = "answered requests"
    return (
        f"{args.mode}: {shape}, {args.connections} connections over {args.processes} "
        f"loader processes, {args.streams} streams, {ack}, {args.duration:g} s"
    )


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def cpu_per_million(cpu_seconds: float | None, entries: int | float | None) -> float | None:
    """CPU seconds per million entries stored: the cost figure every report gives."""
    if cpu_seconds is None or not entries:
        return None
    return 1e6 * cpu_seconds / entries


def format_result(result: RunResult, label: str = "") -> str:
    lines = [
        f"{label}stored    {result.entries:,} entries in {result.seconds:.2f} s: "
        f"{result.entries_per_s:,.0f} entries/s, {result.mb_per_s:,.1f} MB/s",
        f"{label}loader    sent {result.sent_entries:,} entries in {result.messages:,} messages, "
        f"confirmed {result.confirmed_entries:,}; CPU {result.loader_cpu_s:.2f} s "
        f"over {result.loader_processes} processes",
        f"{label}engine    CPU {_num(result.engine_cpu_s, ' s', 2)}, RSS {_num(result.engine_rss_start_mb, ' MB')}"
        f" -> peak {_num(result.engine_peak_rss_mb, ' MB')}; redis-server CPU {_num(result.redis_cpu_s, ' s', 2)}",
    ]
    engine_cpu = cpu_per_million(result.engine_cpu_s, result.entries)
    redis_cpu = cpu_per_million(result.redis_cpu_s, result.entries)
    if engine_cpu is not None and redis_cpu is not None:
        lines.append(
            f"{label}per 1M    engine {engine_cpu:.2f} CPU s, Redis {redis_cpu:.2f} CPU s (all its servers)"
        )
    if result.baseline_entries_per_s is not None:
        fraction = "-" if result.baseline_fraction is None else f"{100 * result.baseline_fraction:.1f}%"
        lines.append(
            f"{label}baseline  {result.baseline_entries_per_s:,.0f} entries/s ({result.baseline_command}); "
            f"engine = {fraction} of it"
        )
    lines.extend(f"{label}note      {error}" for error in result.errors if error.startswith("baseline"))
    lines.append(f"{label}{result.verdict}")
    return "\n".join(lines)


NUMERIC_FIELDS = (
    "entries",
    "seconds",
    "entries_per_s",
    "mb_per_s",
    "sent_entries",
    "confirmed_entries",
    "messages",
    "loader_cpu_s",
    "engine_cpu_s",
    "engine_rss_start_mb",
    "engine_peak_rss_mb",
    "redis_cpu_s",
    "baseline_entries_per_s",
    "baseline_fraction",
)


def summarize(args: argparse.Namespace, runs: list[RunResult]) -> dict[str, Any]:
    """The median of every number over the runs; PASS only when every run passed."""
    summary: dict[str, Any] = {
        "mode": args.mode,
        "params": {
            "entry_size": args.entry_size,
            "batch_size": args.batch_size if args.mode == "push-batch" else None,
            "parts": args.parts if args.mode == "post-data" else None,
            "connections": args.connections,
            "processes": args.processes,
            "streams": args.streams,
            "ack": args.ack,
            "window": args.window if args.ack else None,
            "duration": args.duration,
            "repeat": args.repeat,
            "baseline_pipeline": args.baseline_pipeline if args.baseline else None,
        },
        "pass": all(run.passed for run in runs),
    }
    for name in NUMERIC_FIELDS:
        values = [getattr(run, name) for run in runs if getattr(run, name) is not None]
        summary[name] = statistics.median(values) if values else None
    failed = [run.verdict for run in runs if not run.passed]
    summary["verdict"] = (
        failed[0] if failed else runs[0].verdict if len(runs) == 1 else f"PASS: all {len(runs)} runs"
    )
    summary["runs"] = [asdict(run) for run in runs]
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _settle_defaults(args, parser)
    runs: list[RunResult] = []
    try:
        with open_target(args) as target:
            if not args.json:
                print(describe_load(args))
            for index in range(args.repeat):
                _log(f"run {index + 1}/{args.repeat} ({args.duration:g} s)")
                result = run_once(args, target)
                runs.append(result)
                if not args.json:
                    label = f"[{index + 1}] " if args.repeat > 1 else ""
                    print(format_result(result, label), flush=True)
    except (TargetError, RuntimeError, OSError) as error:
        _log(f"error: {error}")
        if args.json:
            print(json.dumps({"mode": args.mode, "pass": False, "verdict": f"FAIL: {error}"}))
        return 1
    summary = summarize(args, runs)
    if args.json:
        print(json.dumps(summary))
    elif args.repeat > 1:
        print(
            f"median of {len(runs)}: {summary['entries_per_s']:,.0f} entries/s, {summary['mb_per_s']:,.1f} MB/s"
            + (
                f", {100 * summary['baseline_fraction']:.1f}% of redis-benchmark"
                if summary["baseline_fraction"] is not None
                else ""
            )
        )
        print(summary["verdict"])
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
