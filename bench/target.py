"""The engine under load: started privately (its own redis-server and `python -m engine`)
or reached at a URL, its REST control calls, and the Redis it writes to."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from engine.launcher import EngineProcess
from engine.redis.embedded import EmbeddedRedis, find_server_binary
from engine.redis.local_cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent

# Count up to this many entries without losing any to MAXLEN ~ trimming when
# Redis is older than 7 (no `entries-added` in XINFO STREAM).
UNTRIMMED_MAX_LEN = 50_000_000


class TargetError(RuntimeError):
    """The engine or its Redis could not be started or reached."""


class OwnEngine:
    """A private redis-server (unix socket, the engine's own choice) and the engine on a free port."""

    def __init__(
        self,
        workdir: Path,
        redis_binary: str | None = None,
        engine_args: list[str] | None = None,
        persistent: bool = False,
        cluster_masters: int = 0,
    ):
        self.workdir = workdir
        self.persistent = persistent
        self.cluster_masters = cluster_masters  # >0: a local Redis Cluster of this many masters
        self.cluster: LocalCluster | None = None
        self.redis_binary = redis_binary or find_server_binary()
        self.engine_args = engine_args or []
        self.redis: EmbeddedRedis | None = None
        self.engine: EngineProcess | None = None

    @property
    def base_url(self) -> str:
        assert self.engine is not None
        return self.engine.base_url

    @property
    def redis_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        assert self.redis is not None
        return self.redis.url

    @property
    def redis_pid(self) -> int | None:
        return self.redis.process.pid if self.redis and self.redis.process else None

    @property
    def redis_pids(self) -> list[int]:
        """The Redis server, or every node of the cluster."""
        if self.cluster is not None:
            return [process.pid for process in self.cluster.processes.values()]
        return [self.redis_pid] if self.redis_pid else []

    @property
    def pid(self) -> int:
        assert self.engine is not None
        return self.engine.pid

    def start(self, timeout: float = 30.0) -> OwnEngine:
        if self.cluster_masters:
            self.cluster = LocalCluster(
                self.workdir / "cluster", self.cluster_masters, replicas=0, binary=self.redis_binary
            ).start()
        else:
            self.redis = EmbeddedRedis(
                self.workdir / "redis-data", binary=self.redis_binary, persistent=self.persistent
            ).start()
        self.engine = EngineProcess(
            self.workdir / "engine-data", self.redis_url, ["--log-level", "warning", *self.engine_args]
        )
        try:
            self.engine.start(timeout=timeout)
        except RuntimeError as error:
            self.stop()
            raise TargetError(str(error)) from None
        return self

    def stop(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None and engine.process is not None:
            engine.stop()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

    def __enter__(self) -> OwnEngine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def find_listener_pid(port: int) -> int | None:
    """The process listening on a local TCP port (to watch an engine given by --url)."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


class ControlClient:
    """The few REST calls a run needs: a token, stream metadata, deleting bench streams."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read()[:300].decode(errors="replace")
            raise TargetError(f"{method} {path}: HTTP {error.code} {detail}") from None

    def login(self, user: str = "bench") -> str:
        body = urllib.parse.urlencode({"username": user, "password": user}).encode()
        answer = self._request("POST", "/token", body, "application/x-www-form-urlencoded")
        self.token = str(answer["access_token"])
        return self.token

    def set_meta(self, sid: str, meta: dict[str, Any]) -> None:
        self._request(
            "PUT",
            f"/streams/{urllib.parse.quote(sid, safe='')}",
            json.dumps(meta).encode(),
            "application/json",
        )

    def delete_streams(self, sids: list[str]) -> None:
        if sids:
            self._request("DELETE", "/streams/" + "+".join(urllib.parse.quote(s, safe="") for s in sids))


class StreamCounter:
    """Entries ever added to each stream since ``start()``.

    Redis 7 counts them in XINFO STREAM `entries-added`, whatever MAXLEN ~
    trimmed; older Redis only has XLEN, so the streams must then be untrimmed
    (``needs_untrimmed``).
    """

    def __init__(self, redis_url: str, sids: list[str]):
        node = redis.Redis.from_url(redis_url, socket_timeout=10)
        try:
            version = str(node.info("server")["redis_version"])
            clustered = bool(node.info("cluster").get("cluster_enabled"))
        finally:
            node.close()
        self.client: redis.Redis | redis.RedisCluster = (
            redis.RedisCluster.from_url(redis_url, socket_timeout=10)
            if clustered
            else redis.Redis.from_url(redis_url, socket_timeout=10)
        )
        self.sids = sids
        self.redis_version = version
        self.needs_untrimmed = int(version.split(".")[0]) < 7
        self.initial: list[int] = [0] * len(sids)

    def _read(self) -> list[int]:
        with self.client.pipeline(transaction=False) as pipe:
            for sid in self.sids:
                if self.needs_untrimmed:
                    pipe.xlen(sid)
                else:
                    pipe.xinfo_stream(sid)
            replies = pipe.execute(raise_on_error=False)
        counts = []
        for reply in replies:
            if isinstance(reply, int):
                counts.append(reply)
            elif isinstance(reply, dict):
                counts.append(int(reply.get("entries-added") or 0))
            else:  # ResponseError: the stream does not exist (yet)
                counts.append(0)
        return counts

    def start(self) -> None:
        self.initial = self._read()

    def counts(self) -> dict[str, int]:
        return {
            sid: now - before for sid, now, before in zip(self.sids, self._read(), self.initial, strict=True)
        }

    def total(self) -> int:
        return sum(now - before for now, before in zip(self._read(), self.initial, strict=True))

    def close(self) -> None:
        self.client.close()


def redis_pids_of(redis_url: str) -> list[int]:
    """process_id from INFO, when the Redis is on this machine (to sample its CPU)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return [int(client.info("server")["process_id"])]
    except (redis.RedisError, KeyError, ValueError):
        return []
    finally:
        client.close()


def which_redis_benchmark() -> str | None:
    return shutil.which("redis-benchmark")
