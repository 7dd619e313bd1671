"""Per-request reads and writes spread over the nodes of the shard map: each
node's share goes to that node's connection, in one pipelined batch, and the
replies come back in the caller's order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hiredis import ReplyError

from engine._core import RedisUnavailable, Shards, StreamKey, stream_read
from engine.durability import Durability

MEMORY = Durability()

ReadCommand = tuple[StreamKey, tuple[Any, ...]]
Entry = tuple[bytes, bytes, Any, int]  # key, entry id, payload (bytes-like), MAXLEN


async def read_streams(shards: Shards, commands: Sequence[ReadCommand]) -> list[Any]:
    """Each ``(key, arguments)`` stream read ("range" shape) on its key's node; the
    replies (lists of StreamEntry, or hiredis.ReplyError) in the order given.
    Raises RedisUnavailable when a node's read connection is down."""
    groups = shards.group_by_node([key.key for key, _ in commands])
    # Every node's connection first: nothing is sent unless all can be.
    readers = [shards.reader_for_key(commands[indexes[0]][0].key) for indexes in groups.values()]
    if None in readers:
        raise RedisUnavailable("Redis is unavailable")
    reads = [
        reader.read([("range", [commands[i][0]], commands[i][1]) for i in indexes])
        for reader, indexes in zip(readers, groups.values(), strict=True)
        if reader is not None
    ]
    replies: list[Any] = [None] * len(commands)
    for indexes, group_replies in zip(groups.values(), await _all(reads), strict=True):
        for index, reply in zip(indexes, group_replies, strict=True):
            replies[index] = reply
    return replies


async def store_entries(
    shards: Shards, entries: Sequence[Entry], durability: Durability = MEMORY
) -> list[bytes]:
    """XADD every entry on its key's node, waiting first while that node is behind
    (no socket to pause here), and then until ``durability`` is met; the entry ids
    in the order given. Raises RedisUnavailable, or the first error reply
    (hiredis.ReplyError) or failure to make them durable."""
    groups = shards.group_by_node([key for key, _, _, _ in entries])
    durable = durability != MEMORY
    # Every node's connection first: nothing is stored unless all can be asked to.
    pipes = [shards.pipe_for_key(entries[indexes[0]][0], durable) for indexes in groups.values()]
    if None in pipes:
        raise RedisUnavailable("Redis is unavailable")
    for pipe in pipes:
        if pipe is not None:
            await pipe.drained()
    writes = [
        pipe.xadd_many([entries[i] for i in indexes], durability.fsync, durability.replicas)
        for pipe, indexes in zip(pipes, groups.values(), strict=True)
        if pipe is not None
    ]
    ids: list[bytes] = [b""] * len(entries)
    for indexes, group_ids in zip(groups.values(), await _all(writes), strict=True):
        for index, entry_id in zip(indexes, group_ids, strict=True):
            ids[index] = entry_id
    return ids


async def _all(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Every future's result; the first failure is raised once all are done (no
    failure is left unretrieved)."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


# Entries one page of a budgeted read asks for at the most.
PAGE_MOST_ENTRIES = 1024


async def read_within(
    shards: Shards,
    key: StreamKey,
    count: int,
    newest: bool,
    after: tuple[int, int] | None,
    budget: int,
    first_page: int,
    at_least_one: bool,
) -> tuple[list[Any] | ReplyError, bool]:
    """Up to ``count`` entries of ``key`` (the newest, or the oldest after ``after``),
    oldest first, whose payloads fit ``budget`` bytes (the first one whatever its
    size with ``at_least_one``); and whether entries were left out for the budget.
    Read in pages sized by the entries seen so far (the first of ``first_page``
    entries), so a reply never holds much more than the budget. An error reply
    is returned as the entries (a hiredis.ReplyError)."""
    taken: list[Any] = []
    size = 0
    before: tuple[int, int] | None = None
    while len(taken) < count:
        left = count - len(taken)
        if taken:
            mean = max(1, size // len(taken))
            page = max(1, min(left, PAGE_MOST_ENTRIES, (budget - size) // mean))
        else:
            page = min(left, first_page)
        command = stream_read(key, page, newest, None if newest else after, before)
        [reply] = await read_streams(shards, [(key, command)])
        if isinstance(reply, ReplyError):
            return reply, False
        for entry in reply:
            if (taken or not at_least_one) and size + entry.payload_size > budget:
                return _oldest_first(taken, newest), True
            taken.append(entry)
            size += entry.payload_size
        if len(reply) < page:
            break  # the stream has no more
        last = reply[-1].id_pair
        if newest:
            before = last
        else:
            after = last
    return _oldest_first(taken, newest), False


def _oldest_first(entries: list[Any], newest_first: bool) -> list[Any]:
    if newest_first:
        entries.reverse()
    return entries
