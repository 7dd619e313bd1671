"""The benchmark suite in one command: ``python -m bench [--quick] [--cluster]``.

Runs every workload one after the other (never two at once: they would share
the cores), each with its own Redis and engine, with a live progress display,
and writes into ``--out`` (default ``bench/results/<time>/``):

- ``results.json``: every figure of every workload;
- ``report.md``: a table of them, the commands that produced them and the
  machine they ran on;
- ``ratio.png``: each push workload's rate as a share of redis-benchmark's
  XADD in the same run; ``latency.png``: the read path's percentiles.

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

from bench.target import ROOT
from bench.workloads import POST, W1, W2, W2_ACK, W3_ACK

LOADGEN = [sys.executable, "-m", "bench.loadgen"]


@dataclass
class Workload:
    name: str
    argv: list[str]
    kind: str  # "loadgen" (JSON summary) or "table" (bench.harness.print_table lines)
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""


def workloads(quick: bool, cluster: bool) -> list[Workload]:
    duration, repeat = ("2", "1") if quick else ("5", "3")
    timing = ["--duration", duration, "--repeat", repeat, "--json"]
    seconds = ["--seconds", duration]
    chosen = [
        Workload("W1 ack", [*LOADGEN, *W1, "--ack", *timing], "loadgen"),
        Workload("W1 no ack", [*LOADGEN, *W1, "--no-ack", *timing], "loadgen"),
        Workload("W2 ack", [*LOADGEN, *W2_ACK, *timing], "loadgen"),
        Workload("W2 no ack", [*LOADGEN, *W2, "--no-ack", *timing], "loadgen"),
        Workload("W3 ack", [*LOADGEN, *W3_ACK, *timing], "loadgen"),
        Workload("POST", [*LOADGEN, *POST, *timing], "loadgen"),
        Workload("push to pull", [sys.executable, "-m", "bench.pull_latency", *seconds], "table"),
        Workload("fan-out 200", [sys.executable, "-m", "bench.fanout", *seconds], "table"),
        Workload("GET /data", [sys.executable, "-m", "bench.read_rate", *seconds], "table"),
    ]
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


def markdown(done: list[Workload], quick: bool) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')} on {machine()}; {'quick' if quick else 'full'} run.",
        "",
        "| workload | rate | vs redis-benchmark | p50 ms | p99 ms | p99.9 ms | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in done:
        r = w.result
        rate = r.get("entries_per_s") or r.get("received/s") or r.get("requests/s") or r.get("entries/s")
        ratio = r.get("baseline_fraction")
        cells = [
            w.name,
            f"{rate:,.0f}/s" if isinstance(rate, float | int) else "",
            f"{100 * ratio:.1f}%" if isinstance(ratio, float | int) else "",
            *(
                f"{r[key]:.3f}" if isinstance(r.get(key), float | int) else ""
                for key in ("p50 ms", "p99 ms", "p99.9 ms")
            ),
            ("FAIL: " + w.error[:80]) if w.error else "ok",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Commands:", ""]
    lines += [
        f"- {w.name}: `{' '.join(Path(a).name if a == sys.executable else a for a in w.argv)}`" for w in done
    ]
    return "\n".join(lines) + "\n"


def plots(done: list[Workload], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = [
        (w.name, 100 * w.result["baseline_fraction"]) for w in done if w.result.get("baseline_fraction")
    ]
    if ratios:
        figure, axes = plt.subplots(figsize=(8, 0.5 + 0.5 * len(ratios)))
        axes.barh([name for name, _ in ratios], [value for _, value in ratios], color="#3b7dd8")
        axes.axvline(100, color="#444", linestyle="--", linewidth=1)
        axes.set_xlabel("% of redis-benchmark XADD in the same run")
        axes.invert_yaxis()
        figure.tight_layout()
        figure.savefig(out / "ratio.png", dpi=120)
        plt.close(figure)
    keys = ("p50 ms", "p90 ms", "p99 ms", "p99.9 ms")
    latencies = [w for w in done if all(isinstance(w.result.get(key), float) for key in keys)]
    if latencies:
        figure, axes = plt.subplots(figsize=(8, 4))
        for w in latencies:
            axes.plot(keys, [w.result[key] for key in keys], marker="o", label=w.name)
        axes.set_yscale("log")
        axes.set_ylabel("ms")
        axes.legend()
        figure.tight_layout()
        figure.savefig(out / "latency.png", dpi=120)
        plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 s per workload, one run each")
    parser.add_argument("--cluster", action="store_true", help="also W1 on a local 3-master Redis Cluster")
    parser.add_argument("--out", type=Path, help="directory for the report")
    options = parser.parse_args(argv)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    out = options.out or ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    chosen = workloads(options.quick, options.cluster)
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
