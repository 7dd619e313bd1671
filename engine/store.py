"""Stream metadata and info over a control connection (redis-py asyncio with hiredis).

Every operation touches one stream's keys at a time so that it works the
same on a single Redis and on a Redis Cluster.
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError, WatchError

from engine._core import parse_entry_id
from engine.meta import META_PREFIX, meta_key, parse_meta

# The last millisecond an ISO 8601 date can name (9999-12-31T23:59:59.999Z).
_LAST_ISO_MILLISECOND = 253_402_300_799_999


def _field_bytes(fields: object) -> int:
    """Bytes of an entry's field values (XINFO gives [field, value, ...] or a dict)."""
    values = fields.values() if isinstance(fields, dict) else list(fields)[1::2]  # type: ignore[call-overload]
    return sum(len(value) for value in values if isinstance(value, bytes | str))


def id_time(entry_id: str) -> str | None:
    """ISO 8601 time (UTC, milliseconds) of a Redis entry id ``<ms>-<seq>``; None for
    an id past the year 9999, which Redis accepts (a producer that sent
    microseconds, say) and no date can name."""
    millis, _ = parse_entry_id(entry_id)
    if millis > _LAST_ISO_MILLISECOND:
        return None
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(milliseconds=millis)
    return moment.isoformat(timespec="milliseconds")


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class StreamMissing(LookupError):
    pass


class StreamCatalog:
    """What the REST API and the push path ask about streams."""

    def __init__(self, redis: Redis | RedisCluster):
        self.redis = redis

    async def stream_ids(self) -> list[str]:
        """Streams that hold entries or metadata, sorted."""
        found: set[str] = set()
        async for key in self.redis.scan_iter(count=1000, _type="stream"):
            found.add(_text(key))
        async for key in self.redis.scan_iter(match=META_PREFIX + "*", count=1000):
            found.add(_text(key)[len(META_PREFIX) :])
        return sorted(found)

    async def meta(self, sid: str) -> dict[str, Any] | None:
        raw = await self.redis.get(meta_key(sid))
        return None if raw is None else parse_meta(raw)

    async def info(self, sid: str) -> dict[str, Any]:
        """Info object: sid, meta, XINFO STREAM fields with entries as ids, and their times."""
        meta = await self.meta(sid)
        try:
            raw = await self.redis.execute_command("XINFO", "STREAM", sid)
        except ResponseError as error:
            if "no such key" not in str(error):
                raise
            raise StreamMissing(f"stream {sid!r} does not exist") from None
        info: dict[str, Any] = {"sid": sid, "meta": meta}
        for key, value in raw.items():
            name = _text(key)
            if name in ("first-entry", "last-entry"):
                entry_id = _text(value[0]) if value else None
                info[name] = entry_id
                info[name + "-time"] = id_time(entry_id) if entry_id else None
                # Payload bytes of the entry's fields (the console's bytes/s estimate).
                info[name + "-bytes"] = _field_bytes(value[1]) if value else None
            else:
                info[name] = _text(value)
        return info

    async def put_meta(self, sid: str, update: dict[str, Any], override: bool) -> dict[str, Any]:
        """Merge ``update`` into the stored metadata (or replace it) atomically."""
        key = meta_key(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    stored = None if override else await pipe.get(key)
                    merged = {} if stored is None else parse_meta(stored)
                    merged.update(update)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, orjson.dumps(merged))
                    await pipe.execute()
                    return merged
                except WatchError:
                    continue

    async def delete(self, sids: list[str]) -> int:
        """Delete streams and their metadata; returns how many keys existed."""
        # One key per DEL: a stream and its metadata hash to different cluster slots.
        removed = 0
        for sid in sids:
            removed += await self.redis.delete(sid)
            removed += await self.redis.delete(meta_key(sid))
        return removed
