"""engine/_core.pyi describes the compiled module as it is: every public name, class
and signature, checked by mypy's stubtest against the built extension."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_stub_matches_the_compiled_module() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "engine._core",
            "--allowlist",
            str(ROOT / "tests" / "core_stub_allowlist.txt"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
