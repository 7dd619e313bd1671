"""End-to-end workloads as pytest-benchmark tests: each runs the load
generator against its own engine and records what machine noise moves
little: the engine's rate as a share of redis-benchmark's XADD in the same
run, and the engine's CPU seconds per million entries (``extra_info`` in the
saved results).

With PTG_BENCH_CHECK=1 (``make bench-check``) a share more than 20% below the
one in ``bench/baselines/e2e.json`` fails; without it (the suite's
collection check) they only run, briefly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.loadgen import cpu_per_million
from bench.workloads import W1, W2_ACK, W3_ACK

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "bench" / "baselines" / "e2e.json"
WORKLOADS = {"W1 ack": [*W1, "--ack"], "W2 ack": W2_ACK, "W3 ack": W3_ACK}
# A share this much below the baseline's fails the check.
TOLERANCE = 0.8
CHECKING = os.environ.get("PTG_BENCH_CHECK") == "1"


def run_workload(argv: list[str]) -> dict[str, Any]:
    seconds = "3" if CHECKING else "1"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            *argv,
            "--duration",
            seconds,
            "--baseline-seconds",
            seconds,
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stderr[-1000:]
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["pass"], result.get("verdict")
    return result


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_share_of_redis_benchmark(benchmark: BenchmarkFixture, name: str) -> None:
    result = benchmark.pedantic(run_workload, args=(WORKLOADS[name],), rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    share = result.get("baseline_fraction")
    benchmark.extra_info["share of redis-benchmark"] = share
    engine_cpu = cpu_per_million(result.get("engine_cpu_s"), result.get("entries"))
    if engine_cpu is not None:
        benchmark.extra_info["engine CPU s per million entries"] = engine_cpu
    if CHECKING and share is not None:
        baseline = json.loads(BASELINES.read_text())[name]
        assert share >= TOLERANCE * baseline, (
            f"{name}: {share:.3f} of redis-benchmark, baseline {baseline:.3f}"
        )
