"""/health: what a load balancer or an operator asks first, as JSON, without a
token (like /ping, which answers only true or false)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from api.security import runtime_of
from api.streams import ORJSONResponse, redis_trouble
from engine import __version__

if TYPE_CHECKING:
    from engine.runtime import Runtime


async def health(request: Request) -> Response:
    """The engine's version and uptime, its Redis (server, version, and the
    cluster's state when it is one), and the open sockets of this process;
    503 while Redis does not answer."""
    runtime = runtime_of(request)
    redis: dict[str, Any] = {
        "server": runtime.server.name,
        "version": ".".join(map(str, runtime.server.version)),
    }
    trouble = await redis_trouble(runtime)
    redis["reachable"] = trouble is None
    if trouble is not None:
        redis["error"] = trouble
    if runtime.cluster is not None:
        redis["cluster"] = await _cluster_state(runtime)
    counters = runtime.counters
    body = {
        "status": "ok" if redis["reachable"] else "redis unreachable",
        "version": __version__,
        "uptime_seconds": round(time.monotonic() - runtime.started, 3),
        "redis": redis,
        "sockets": {"push": counters.push_sockets, "pull": counters.pull_sockets},
        "redis_connections_up": runtime.redis_connections_up(),
        "pid": os.getpid(),
    }
    return ORJSONResponse(body, status_code=200 if redis["reachable"] else 503)


async def _cluster_state(runtime: Runtime) -> dict[str, Any]:
    """The masters this process knows and what the first reachable one says of the cluster."""
    assert runtime.cluster is not None
    state: dict[str, Any] = {"masters": len(runtime.cluster.nodes), "state": None}
    for node in range(len(runtime.cluster.nodes)):
        pipe = runtime.shards.pipe_for_node(node)
        if pipe is None:
            continue
        try:
            text = await pipe.call("CLUSTER", "INFO")
        except Exception:  # a node going away: ask the next one
            continue
        fields = dict(line.split(":", 1) for line in text.decode().split() if ":" in line)
        state["state"] = fields.get("cluster_state")
        state["slots_ok"] = int(fields.get("cluster_slots_ok", 0))
        break
    return state
