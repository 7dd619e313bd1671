"""Profile the engine under load: ``python -m bench.profile WORKLOAD [--seconds N]``.

Starts its own Redis and engine (bench.target), drives WORKLOAD with the load
generator against it, and samples the engine with py-spy meanwhile (native
frames, so the Cython core shows; each sample pauses the engine for a moment).
Writes into ``--out`` (default ``bench/profiles/<workload>-<time>/``):

- ``flamegraph.svg``: open it in a browser;
- ``profile.collapsed.txt``: collapsed stacks, which speedscope
  (https://www.speedscope.app, or ``npx speedscope``) opens as they are;

and prints the functions with the most self time, each with its layer:
the Cython core (``ext/``), Python (the engine's and its libraries' ``.py``),
the CPython runtime, libc and the kernel's system calls, other native code
(uvloop, hiredis, picows' C parts), and time idle in epoll (left out of the
busy share).

``--perf`` samples with Linux ``perf`` instead (``perf record -g``; needs
``perf`` and ``kernel.perf_event_paranoid`` of 1 or less, or root): no pause
of the engine, and the kernel's own frames (socket copies, TCP, the unix
socket to Redis) show, but no Python frames. It writes ``perf.data``,
``perf.script.txt`` (speedscope opens it) and ``profile.collapsed.txt``, and
prints the same report, the kernel as a layer of its own. perf samples only
while the engine runs, so it reports no idle share.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.target import ROOT, OwnEngine
from bench.workloads import POST, W1, W2, W2_ACK, W3_ACK

WORKLOADS = {
    "W1": [*W1, "--ack"],
    "W1-noack": [*W1, "--no-ack"],
    "W2": W2_ACK,
    "W2-noack": [*W2, "--no-ack"],
    "W3": W3_ACK,
    "POST": POST,
}
# py-spy stops the engine for each sample to unwind native frames: not too often.
SAMPLES_PER_SECOND = 100
# perf samples without stopping it: often, at an odd rate that no timer shares.
PERF_SAMPLES_PER_SECOND = 999
TOP = 20
# "function (file:line)" or "function (library)" in py-spy's collapsed frames.
FRAME = re.compile(r"^(?P<function>.*?) \((?P<where>[^()]*)\)$")
IDLE = ("epoll_wait", "epoll_pwait", "epoll_pwait2")


def layer_of(frame: str) -> str:
    match = FRAME.match(frame)
    function, where = (match["function"], match["where"]) if match else (frame, "")
    source = where.rsplit(":", 1)[0]
    if function in IDLE:
        return "idle (waiting for events)"
    if "[kernel" in where:
        return "kernel"
    if (
        source.endswith((".pyx", ".pxi", ".pxd"))
        or source.startswith("View.")
        or function.startswith(("__Pyx", "__pyx"))
    ):
        return "Cython core"
    if source.endswith(".py"):
        return "Python"
    if function.startswith(("Py", "_Py")) or "libpython" in where:
        return "CPython runtime"
    if any(hint in where for hint in ("libc.so", "libpthread", "vdso")):
        return "libc / system calls"
    return "other native (uvloop, hiredis, picows)"


def self_times(collapsed: Path) -> tuple[collections.Counter[str], int]:
    """Samples per leaf frame, and all samples."""
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaves[stack.rsplit(";", 1)[-1]] += int(count)
        total += int(count)
    return leaves, total


def report(collapsed: Path) -> str:
    leaves, total = self_times(collapsed)
    if not total:
        return "no samples (is py-spy allowed to read the engine's memory? root or ptrace_scope 0)"
    layers: collections.Counter[str] = collections.Counter()
    for frame, count in leaves.items():
        layers[layer_of(frame)] += count
    idle = sum(count for name, count in layers.items() if name.startswith("idle"))
    busy = max(total - idle, 1)
    lines = [f"{total} samples, {100 * idle / total:.1f}% idle in epoll; busy self time by layer:"]
    lines += [
        f"  {100 * count / busy:5.1f}%  {name}"
        for name, count in layers.most_common()
        if not name.startswith("idle")
    ]
    lines.append(f"top {TOP} functions by busy self time:")
    busy_leaves = [
        (frame, count) for frame, count in leaves.most_common() if not layer_of(frame).startswith("idle")
    ]
    for frame, count in busy_leaves[:TOP]:
        lines.append(f"  {100 * count / busy:5.1f}%  [{layer_of(frame)}] {frame[:140]}")
    return "\n".join(lines)


def collapse_perf_script(text: str) -> collections.Counter[str]:
    """``perf script`` samples (a header line, then one frame per line, leaf
    first, a blank line after) as collapsed stacks: "function (library)"
    frames, root first, joined by ";"."""
    stacks: collections.Counter[str] = collections.Counter()
    frames: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith(("\t", " ")) and line.strip():
            _, _, symbol_and_library = line.strip().partition(" ")
            symbol, _, library = symbol_and_library.rpartition(" (")
            symbol = symbol.split("+0x", 1)[0] or "[unknown]"
            frames.append(f"{symbol} ({Path(library.rstrip(')')).name})")
        elif not line.strip() and frames:
            stacks[";".join(reversed(frames))] += 1
            frames = []
    return stacks


def perf_profile(pid: int, seconds: float, out: Path) -> str | None:
    """Sample ``pid`` with perf for ``seconds`` into ``out``; an error, or None."""
    data = out / "perf.data"
    recorded = subprocess.run(
        [
            *("perf", "record", "-F", str(PERF_SAMPLES_PER_SECOND), "-g"),
            *("-p", str(pid), "-o", str(data), "--", "sleep", str(seconds)),
        ],
        capture_output=True,
        text=True,
    )
    if recorded.returncode != 0:
        return f"perf record failed: {recorded.stderr[-500:]}"
    script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True)
    if script.returncode != 0:
        return f"perf script failed: {script.stderr[-500:]}"
    (out / "perf.script.txt").write_text(script.stdout)
    stacks = collapse_perf_script(script.stdout)
    (out / "profile.collapsed.txt").write_text("".join(f"{stack} {n}\n" for stack, n in stacks.items()))
    return None


def py_spy_profile(pid: int, seconds: float, out: Path) -> str | None:
    """Sample ``pid`` with py-spy into ``out``, one sampler at a time (a native
    sampler attaches with ptrace): the flame graph first, then the collapsed
    stacks, under the same load. An error, or None."""
    for output, fmt in ((out / "flamegraph.svg", "flamegraph"), (out / "profile.collapsed.txt", "raw")):
        sampler = sample(pid, seconds, output, fmt)
        _, errors = sampler.communicate()
        if sampler.returncode != 0:
            return f"py-spy failed: {errors.decode(errors='replace')[-500:]}"
    return None


def sample(pid: int, seconds: float, output: Path, fmt: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            shutil.which("py-spy") or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--native",
            "--rate",
            str(SAMPLES_PER_SECOND),
            "--duration",
            str(int(seconds)),
            "--format",
            fmt,
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="seconds of load and sampling (default 10)"
    )
    parser.add_argument("--out", type=Path, help="directory for the results")
    parser.add_argument("--perf", action="store_true", help="sample with Linux perf instead of py-spy")
    options = parser.parse_args(argv)
    if options.perf and shutil.which("perf") is None:
        print("error: perf is not installed (apt-get install linux-perf)", file=sys.stderr)
        return 2
    if not options.perf and shutil.which("py-spy") is None:
        print("error: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    out = options.out or ROOT / "bench" / "profiles" / f"{options.workload}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="ptg-profile-") as directory,
        OwnEngine(Path(directory)) as target,
    ):
        token_free = [
            *WORKLOADS[options.workload],
            "--duration",
            str((1 if options.perf else 2) * options.seconds + 2),
            "--no-baseline",
        ]
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                *token_free,
                "--url",
                target.base_url,
                "--redis-url",
                target.redis_url,
                "--engine-pid",
                str(target.pid),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # past the loaders' connecting
        failed = (
            perf_profile(target.pid, options.seconds, out)
            if options.perf
            else py_spy_profile(target.pid, options.seconds, out)
        )
        if failed:
            print(f"error: {failed}", file=sys.stderr)
            load.kill()
            return 1
        loaded, _ = load.communicate()
    print(
        f"{options.workload} for {options.seconds:g} s; load generator: "
        + " ".join(line for line in loaded.splitlines() if line.startswith(("stored", "PASS", "FAIL")))
    )
    print(report(out / "profile.collapsed.txt"))
    if options.perf:
        print(f"speedscope: {out / 'perf.script.txt'}\nperf report -i {out / 'perf.data'}")
    else:
        print(f"flame graph: {out / 'flamegraph.svg'}\nspeedscope: {out / 'profile.collapsed.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
