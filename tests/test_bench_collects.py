"""The micro-benchmarks in bench/ are collected and run once each (timing
off, no thresholds), so that they cannot rot between benchmark runs."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_micro_benchmarks_run() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "bench",
            "-o",
            "addopts=",
            "--benchmark-disable",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "no tests ran" not in done.stdout
