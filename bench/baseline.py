"""The ceiling to compare with: redis-benchmark doing pipelined XADD of the same
payload to the same Redis, over the same kind of socket.

redis-benchmark 7.0 does not substitute ``__data__`` or ``-d`` into a custom
command, and one argv string is capped at 128 KiB by Linux, so the payload
goes in with ``-x`` (the last argument read from stdin).
"""

from __future__ import annotations

import csv
import io
import random
import subprocess
import time
import urllib.parse
from dataclasses import dataclass

import redis

# The probe run sizes the measured run; it lasts about this long at the engine's rate.
PROBE_SECONDS = 0.2
# Upper bound on payload pushed through Redis (and its AOF) by one baseline run.
MAX_BASELINE_BYTES = 4 * 1024**3


@dataclass
class BaselineResult:
    entries_per_s: float
    requests: int
    seconds: float
    command: str


def connection_args(redis_url: str) -> list[str]:
    address = urllib.parse.urlsplit(redis_url)
    if address.scheme == "unix":
        args = ["-s", urllib.parse.unquote(address.path)]
    elif address.scheme == "redis":
        args = ["-h", address.hostname or "127.0.0.1", "-p", str(address.port or 6379)]
    else:
        raise ValueError(f"redis-benchmark cannot reach {address.scheme}:// URLs")
    if address.password:
        args += ["-a", urllib.parse.unquote(address.password)]
        if address.username:
            args += ["--user", urllib.parse.unquote(address.username)]
    return args


def _payload(size: int) -> bytes:
    # Printable, no newline: -x reads the argument as the whole of stdin.
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    generator = random.Random(size)
    return bytes(generator.choices(alphabet, k=size))


def run_redis_benchmark(
    binary: str,
    redis_url: str,
    key: str,
    entry_size: int,
    max_len: int,
    pipeline: int,
    clients: int,
    requests: int,
    cluster: bool = False,
) -> BaselineResult:
    # On a cluster, redis-benchmark gives each client a node and fills {tag}
    # with a hash tag of that node's slots: the XADDs spread over the masters.
    cluster_args = ["--cluster"] if cluster else []
    command = [
        binary,
        *connection_args(redis_url),
        *cluster_args,
        "-c",
        str(clients),
        "-P",
        str(pipeline),
        "-n",
        str(requests),
        "--csv",
        "-x",
        "XADD",
        key,
        "MAXLEN",
        "~",
        str(max_len),
        "*",
        "d",
    ]
    started = time.monotonic()
    done = subprocess.run(command, input=_payload(entry_size), capture_output=True, timeout=600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.decode(errors='replace')[-300:]}")
    rate = 0.0
    for row in csv.reader(io.StringIO(done.stdout.decode(errors="replace"))):
        if len(row) > 1 and row[0].startswith("XADD"):
            try:
                rate = float(row[1])
            except ValueError:
                rate = 0.0
    if not 0 < rate < float("inf"):  # "inf" when the run was too short to time
        rate = requests / seconds
    shown = (
        " ".join(command[: command.index("-x")]) + f" -x XADD {key} MAXLEN ~ {max_len} * d <{entry_size} B>"
    )
    return BaselineResult(entries_per_s=rate, requests=requests, seconds=seconds, command=shown)


def measure_baseline(
    binary: str,
    redis_url: str,
    key: str,
    entry_size: int,
    max_len: int,
    pipeline: int,
    clients: int,
    seconds: float,
    rate_hint: float,
    cluster: bool = False,
) -> BaselineResult:
    """A short probe sized from ``rate_hint`` (entries/s), then a run of about ``seconds``."""
    step = pipeline * clients
    cap = max(step, MAX_BASELINE_BYTES // max(1, entry_size))

    def rounded(count: float) -> int:
        return int(min(cap, max(step * 10, count)) // step * step)

    try:
        if cluster:
            key = key + ":{tag}"

        def run(requests: int) -> BaselineResult:
            return run_redis_benchmark(
                binary, redis_url, key, entry_size, max_len, pipeline, clients, requests, cluster
            )

        probe = run(rounded(rate_hint * PROBE_SECONDS))
        return run(rounded(probe.entries_per_s * seconds))
    finally:
        if cluster:
            drop_cluster_keys(redis_url, key.replace("{tag}", "*"))
        else:
            client = redis.Redis.from_url(redis_url, socket_timeout=30)
            try:
                client.delete(key)
            finally:
                client.close()


def drop_cluster_keys(redis_url: str, pattern: str) -> None:
    client = redis.RedisCluster.from_url(redis_url, socket_timeout=30)
    try:
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    finally:
        client.close()
