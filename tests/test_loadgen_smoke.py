"""The load generator end to end: a one-second run against its own engine, checked
entry by entry in Redis. No speed thresholds: this guards the tool, not the engine's speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("mode", ["push-batch", "push-single"])
def test_a_short_run_is_verified_in_redis(mode: str) -> None:
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        mode,
        "--duration",
        "1",
        "--connections",
        "1",
        "--processes",
        "1",
        "--no-baseline",
        "--json",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    result = json.loads(lines[-1])
    assert result["pass"] is True, result["verdict"]
    assert result["verdict"].startswith("PASS")
    assert result["entries"] > 0
    assert result["entries_per_s"] > 0
    assert done.returncode == 0, done.stderr
