"""/data/{sid}/push: query parsing and routing for a producer socket (the
per-frame work is engine._core.PushSession)."""

from __future__ import annotations

from picows import WSListener
from picows import WSUpgradeResponseWithListener as Answer

from engine._core import BatchRoute, PushSession
from engine.runtime import Runtime
from engine.ws.query import BadQuery, bad_request, flag


def push_endpoint(runtime: Runtime, sids: list[str], query: dict[str, str], user: str) -> WSListener | Answer:
    try:
        batch, ack = flag(query, "batch"), flag(query, "ack")
        offsets = query.get("offsets", "auto") or "auto"
        if offsets not in ("auto", "start", "end"):
            raise BadQuery(f"offsets must be 'auto', 'start' or 'end', not {offsets!r}")
    except BadQuery as error:
        return bad_request(error)
    if sids == ["*"]:
        route = BatchRoute("any")
    elif len(sids) > 1:
        route = BatchRoute("listed", sids)
    else:
        route = BatchRoute("single", sids)
    return PushSession(
        runtime.ingest,
        runtime.maxlens.values,
        runtime.maxlens.load,
        route,
        batch,
        ack,
        offsets,
        runtime.config.max_message_size,
    )
