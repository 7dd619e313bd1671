"""/data/{sid}/push: query parsing and routing for a producer socket (the
per-frame work is engine._core.PushSession)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from picows import WSListener
from picows import WSUpgradeResponseWithListener as Answer

from engine._core import BatchRoute, PushOptions, PushSession
from engine.durability import Durability
from engine.ws.query import BadQuery, bad_request, flag

if TYPE_CHECKING:
    from engine.runtime import Runtime

Offsets = Literal["auto", "start", "end"]
OFFSETS = ("auto", "start", "end")


def push_options(runtime: Runtime, sids: list[str], query: dict[str, str]) -> PushOptions:
    """A producer socket's settings from its path's stream ids and its query."""
    durability = runtime.durability
    if query.get("durability"):
        try:
            durability = Durability.parse(query["durability"])
        except ValueError as error:
            raise BadQuery(str(error)) from None
        refusal = runtime.durability_refusal(durability)
        if refusal is not None:
            raise BadQuery(refusal)
    offsets = query.get("offsets", "auto") or "auto"
    if offsets not in OFFSETS:
        raise BadQuery(f"offsets must be 'auto', 'start' or 'end', not {offsets!r}")
    if sids == ["*"]:
        route = BatchRoute("any")
    elif len(sids) > 1:
        route = BatchRoute("listed", sids)
    else:
        route = BatchRoute("single", sids)
    return PushOptions(
        route,
        batch=flag(query, "batch"),
        ack=flag(query, "ack"),
        offsets=cast(Offsets, offsets),
        max_message_size=runtime.config.max_message_size,
        lacks_ms_any_seq=runtime.lacks_ms_any_seq,
        wait_fsync=durability.fsync,
        wait_replicas=durability.replicas,
    )


def push_endpoint(runtime: Runtime, sids: list[str], query: dict[str, str], user: str) -> WSListener | Answer:
    try:
        options = push_options(runtime, sids, query)
    except BadQuery as error:
        return bad_request(error)
    return PushSession(options, runtime.shards, runtime.maxlens, runtime.counters)
