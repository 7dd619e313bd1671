"""The benchmark suite in one command: ``python -m bench [--quick] [--cluster]``.

Runs every workload one after the other (never two at once: they would share
the cores), each with its own Redis and engine, with a live progress display,
and writes into ``--out`` (default ``bench/results/<time>/``):

- ``results.json``: every figure of every workload;
- ``report.md``: a table of them, the commands that produced them and the
  machine they ran on;
- ``ratio.png``: each push workload's rate as a share of redis-benchmark's
  XADD in the same run;
- ``entry-size.png``: throughput (MB/s) of acked pushes from 64 B to 1 MiB
  entries, the engine next to redis-benchmark;
- ``connections.png``: W1 with acks over 1 to 8 sockets, the same way;
- ``latency-cdf.png``: push-to-pull latency, every sample;
- ``cpu.png``: the engine's and Redis's CPU per entry, per workload.

``--url http://host:port --redis-url URL`` runs the push and POST workloads,
verified the same way, against any server that speaks the protocol (the
original, say), to compare side by side; the read-path workloads start an
engine of their own and are left out then.

The load generator's workloads report the ratio to redis-benchmark measured
in the same run, which machine noise moves far less than a rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import cpu_per_million
from bench.target import ROOT
from bench.workloads import POST, W1, W2, W2_ACK, W3_ACK

LOADGEN = [sys.executable, "-m", "bench.loadgen"]


# The entry sizes of the size sweep, and how many go in one message: about
# 64 KiB a message, as a camera or a batching producer would send.
SWEEP_SIZES = (64, 1024, 16 * 1024, 256 * 1024, 1024 * 1024)
MESSAGE_BYTES = 64 * 1024
SWEEP_CONNECTIONS = (1, 2, 4, 8)
ENGINE_COLOUR = "#3b7dd8"
REDIS_COLOUR = "#d8613b"


@dataclass
class Workload:
    name: str
    argv: list[str]
    kind: str  # "loadgen" (JSON summary) or "table" (bench.harness.print_table lines)
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""
    sweep: tuple[str, int] | None = None  # ("entry size" or "connections", its value)


def workloads(quick: bool, cluster: bool, out: Path, target: list[str] | None = None) -> list[Workload]:
    """The suite; ``target`` (--url and --redis-url for the load generator) aims the
    push and POST workloads at a running server and leaves the others out."""
    duration, repeat = ("2", "1") if quick else ("5", "3")
    timing = ["--duration", duration, "--repeat", repeat, "--json", *(target or [])]
    seconds = ["--seconds", duration]
    chosen = [
        Workload("W1 ack", [*LOADGEN, *W1, "--ack", *timing], "loadgen"),
        Workload("W1 no ack", [*LOADGEN, *W1, "--no-ack", *timing], "loadgen"),
        Workload("W2 ack", [*LOADGEN, *W2_ACK, *timing], "loadgen"),
        Workload("W2 no ack", [*LOADGEN, *W2, "--no-ack", *timing], "loadgen"),
        Workload("W3 ack", [*LOADGEN, *W3_ACK, *timing], "loadgen"),
        Workload("POST", [*LOADGEN, *POST, *timing], "loadgen"),
    ]
    if not target:
        samples = ["--samples", str(out / "latency-samples.txt")]
        chosen += [
            Workload(
                "push to pull", [sys.executable, "-m", "bench.pull_latency", *seconds, *samples], "table"
            ),
            Workload("fan-out 200", [sys.executable, "-m", "bench.fanout", *seconds], "table"),
            Workload("GET /data", [sys.executable, "-m", "bench.read_rate", *seconds], "table"),
        ]
    sweep_timing = ["--duration", "1" if quick else "3", "--json", *(target or [])]
    for size in SWEEP_SIZES:
        batch = str(max(1, MESSAGE_BYTES // size))
        argv = ["push-batch", "--entry-size", str(size), "--batch-size", batch, "--connections", "2", "--ack"]
        chosen.append(
            Workload(
                f"{size} B entries", [*LOADGEN, *argv, *sweep_timing], "loadgen", sweep=("entry size", size)
            )
        )
    for connections in SWEEP_CONNECTIONS:
        argv = [*W1, "--ack", "--connections", str(connections)]
        name = f"W1 ack, {connections} sockets"
        chosen.append(
            Workload(name, [*LOADGEN, *argv, *sweep_timing], "loadgen", sweep=("connections", connections))
        )
    if cluster:
        chosen.append(
            Workload(
                "W1 ack, 3-master cluster", [*LOADGEN, *W1, "--ack", "--cluster", "3", *timing], "loadgen"
            )
        )
    return chosen


def parse_table(text: str) -> dict[str, Any]:
    """The ``  name   value`` lines that bench.harness.print_table writes."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.startswith("  ") or len(line) < 31:
            continue
        name, value = line[2:30].strip(), line[30:].strip()
        try:
            found[name] = float(value)
        except ValueError:
            found[name] = value
    return found


def run(workload: Workload) -> None:
    started = time.monotonic()
    done = subprocess.run(workload.argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    workload.seconds = time.monotonic() - started
    if workload.kind == "loadgen":
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        workload.result = json.loads(lines[-1]) if lines else {}
        if not workload.result.get("pass"):
            workload.error = workload.result.get("verdict") or done.stderr[-300:]
    else:
        workload.result = parse_table(done.stdout)
        if done.returncode != 0 or not workload.result:
            workload.error = done.stderr[-300:] or "no figures"


def machine() -> str:
    return f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def per_million(result: dict[str, Any], cpu_key: str) -> float | None:
    """CPU seconds per million entries stored, from a load generator result."""
    return cpu_per_million(result.get(cpu_key), result.get("entries"))


def markdown(done: list[Workload], quick: bool) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')} on {machine()}; {'quick' if quick else 'full'} run.",
        "",
        "| workload | rate | vs redis-benchmark | engine CPU s/M | Redis CPU s/M | peak RSS MB "
        "| p50 ms | p99 ms | p99.9 ms | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in done:
        r = w.result
        rate = r.get("entries_per_s") or r.get("received/s") or r.get("requests/s") or r.get("entries/s")
        ratio = r.get("baseline_fraction")
        figures = [per_million(r, "engine_cpu_s"), per_million(r, "redis_cpu_s"), r.get("engine_peak_rss_mb")]
        cells = [
            w.name,
            f"{rate:,.0f}/s" if isinstance(rate, float | int) else "",
            f"{100 * ratio:.1f}%" if isinstance(ratio, float | int) else "",
            *(f"{value:.2f}" if isinstance(value, float | int) else "" for value in figures),
            *(
                f"{r[key]:.3f}" if isinstance(r.get(key), float | int) else ""
                for key in ("p50 ms", "p99 ms", "p99.9 ms")
            ),
            ("FAIL: " + w.error[:80]) if w.error else "ok",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Rates are entries stored per second, every one verified in Redis; CPU is",
        "seconds per million entries stored (Redis's over every node of a cluster).",
        "",
        "Commands:",
        "",
    ]
    lines += [
        f"- {w.name}: `{' '.join(Path(a).name if a == sys.executable else a for a in w.argv)}`" for w in done
    ]
    return "\n".join(lines) + "\n"


def plots(done: list[Workload], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy

    main_runs = [w for w in done if w.sweep is None]
    ratios = [
        (w.name, 100 * w.result["baseline_fraction"]) for w in main_runs if w.result.get("baseline_fraction")
    ]
    if ratios:
        figure, axes = plt.subplots(figsize=(8, 0.5 + 0.5 * len(ratios)))
        axes.barh([name for name, _ in ratios], [value for _, value in ratios], color=ENGINE_COLOUR)
        axes.axvline(100, color="#444", linestyle="--", linewidth=1)
        axes.set_xlabel("% of redis-benchmark XADD in the same run")
        axes.invert_yaxis()
        save(figure, out / "ratio.png")
    sweep_plot(done, "entry size", out / "entry-size.png")
    sweep_plot(done, "connections", out / "connections.png")
    samples = out / "latency-samples.txt"
    if samples.exists() and samples.stat().st_size:
        values = numpy.sort(numpy.loadtxt(samples, ndmin=1))
        figure, axes = plt.subplots(figsize=(8, 4))
        axes.plot(values, numpy.arange(1, len(values) + 1) / len(values), color=ENGINE_COLOUR)
        axes.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
        axes.xaxis.set_major_formatter(plain)
        axes.xaxis.set_minor_formatter(plain)
        axes.set_xlabel("push to pull latency, ms (log scale)")
        axes.set_ylabel(f"share of the {len(values)} entries")
        axes.grid(True, which="both", alpha=0.3)
        save(figure, out / "latency-cdf.png")
    costs = [
        (w.name, engine, redis)
        for w in main_runs
        if (engine := per_million(w.result, "engine_cpu_s")) is not None
        and (redis := per_million(w.result, "redis_cpu_s")) is not None
    ]
    if costs:
        figure, axes = plt.subplots(figsize=(8, 0.6 + 0.6 * len(costs)))
        rows = numpy.arange(len(costs))
        axes.barh(rows - 0.2, [engine for _, engine, _ in costs], 0.4, label="engine", color=ENGINE_COLOUR)
        axes.barh(rows + 0.2, [redis for _, _, redis in costs], 0.4, label="Redis", color=REDIS_COLOUR)
        axes.set_yticks(rows, [name for name, _, _ in costs])
        axes.set_xscale("log")
        axes.set_xlabel("CPU µs per entry stored (log scale)")
        axes.invert_yaxis()
        axes.legend()
        save(figure, out / "cpu.png")


def sweep_plot(done: list[Workload], axis: str, path: Path) -> None:
    """The engine's rate next to redis-benchmark's along one sweep: MB/s across
    entry sizes (entries/s spans four orders of magnitude there), entries/s
    across connections."""
    import matplotlib.pyplot as plt

    points = sorted(
        (w.sweep[1], w.result) for w in done if w.sweep is not None and w.sweep[0] == axis and w.result
    )
    if not points:
        return
    by_size = axis == "entry size"

    def rates(key: str) -> list[float]:
        return [(r.get(key) or 0.0) * (x / 1e6 if by_size else 1.0) for x, r in points]

    xs = [x for x, _ in points]
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.plot(xs, rates("entries_per_s"), marker="o", label="engine", color=ENGINE_COLOUR)
    axes.plot(
        xs, rates("baseline_entries_per_s"), marker="s", label="redis-benchmark XADD", color=REDIS_COLOUR
    )
    axes.set_xscale("log", base=2)
    axes.set_xlabel("entry size, bytes" if by_size else "sockets (redis-benchmark: clients)")
    axes.set_ylabel("MB/s stored" if by_size else "entries/s stored")
    axes.grid(True, alpha=0.3)
    axes.legend()
    save(figure, path)


def save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s per workload, one run each")
    parser.add_argument("--cluster", action="store_true", help="also W1 on a local 3-master Redis Cluster")
    parser.add_argument("--out", type=Path, help="directory for the report")
    parser.add_argument("--url", help="a running server to load instead of an own engine, http://host:port")
    parser.add_argument("--redis-url", help="the Redis the server at --url writes to (needed with --url)")
    parser.add_argument("--token", help="a token for --url (default: dev-mode login bench:bench)")
    options = parser.parse_args(argv)
    if (options.redis_url or options.token) and not options.url:
        parser.error("--redis-url and --token go with --url")
    if options.url and not options.redis_url:
        parser.error("--url needs --redis-url: every entry is verified in Redis")
    target = None
    if options.url:
        target = ["--url", options.url, "--redis-url", options.redis_url]
        target += ["--token", options.token] if options.token else []
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    out = options.out or ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    chosen = workloads(options.quick, options.cluster and not options.url, out, target)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()) as progress:
        task = progress.add_task("starting", total=len(chosen))
        for workload in chosen:
            progress.update(task, description=f"{workload.name:<26}")
            run(workload)
            verdict = "[red]FAIL[/red]" if workload.error else "[green]ok[/green]"
            progress.console.print(f"{workload.name:<26} {verdict} ({workload.seconds:.0f} s)")
            progress.advance(task)
    (out / "results.json").write_text(
        json.dumps(
            {w.name: {"argv": w.argv[1:], "result": w.result, "error": w.error} for w in chosen}, indent=2
        )
    )
    (out / "report.md").write_text(markdown(chosen, options.quick))
    plots(chosen, out)
    print(f"report: {out / 'report.md'}")
    return 1 if any(w.error for w in chosen) else 0


if __name__ == "__main__":
    sys.exit(main())
