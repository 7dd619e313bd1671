"""/data/{sid}/pull: query parsing for a consumer socket (the per-entry work is
engine._core.PullSession, fed by the process's PullHub)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from picows import WSListener
from picows import WSUpgradeResponseWithListener as Answer

from engine._core import PullOptions, PullSession, StreamKey
from engine.cursors import BadCursor, parse_cursors
from engine.ws.query import BadQuery, bad_request, flag, integer, number

if TYPE_CHECKING:
    from engine.runtime import Runtime

# The most entries one pull step or one GET /data may ask for (``count``): what a
# socket holds or a reply carries is bounded by it.
MAX_COUNT = 10_000


def pull_options(sids: list[str], query: dict[str, str]) -> PullOptions:
    """A pull socket's settings from its path's stream ids and its query
    (PROTOCOL.md, "WebSocket pull"); raises BadQuery."""
    count = integer(query, "count", 1, minimum=1)
    if count > MAX_COUNT:
        raise BadQuery(f"query parameter 'count' must be at most {MAX_COUNT}")
    try:
        cursors = parse_cursors(query.get("last_entry_id") or "$", len(sids))
    except BadCursor as error:
        raise BadQuery(str(error)) from None
    # Explicit ids replay every entry after them; "$" and "*" follow the newest.
    latest = flag(query, "latest", all(cursor.kind != "id" for cursor in cursors))
    rate_limit = number(query, "rate_limit")
    max_fps = number(query, "max_fps")
    if "max_fps" in query and max_fps <= 0:
        raise BadQuery("query parameter 'max_fps' must be above 0")
    return PullOptions(
        [StreamKey(sid) for sid in sids],
        [cursor.as_tuple() for cursor in cursors],
        count=count,
        latest=latest,
        timeout=number(query, "timeout") / 1000,
        onebyone=flag(query, "onebyone"),
        ack=flag(query, "ack"),
        header=flag(query, "header", True),
        sync_index=_sync_index(sids, query.get("time_sync_id", "")),
        min_interval=max(rate_limit, 1 / max_fps if max_fps else 0.0),
    )


def _sync_index(sids: list[str], value: str) -> int:
    """``time_sync_id``: one of the path's stream ids, or its index among them."""
    if value == "":
        return -1
    if value in sids:
        return sids.index(value)
    if value.isascii() and value.isdigit() and int(value) < len(sids):
        return int(value)
    raise BadQuery(f"time_sync_id {value!r} is neither a stream of this socket nor its index")


def pull_endpoint(runtime: Runtime, sids: list[str], query: dict[str, str], user: str) -> WSListener | Answer:
    try:
        options = pull_options(sids, query)
    except BadQuery as error:
        return bad_request(error)
    return PullSession(options, runtime.pulls, runtime.shards, runtime.counters)
