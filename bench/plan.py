"""What a loader connection is asked to do and what it reports (shared by the
loader processes and the producers they run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class LoadPlan:
    """What one loader process does (picklable: it crosses a spawn)."""

    mode: str  # push-batch | push-single | post-data
    base_url: str  # http://host:port of the engine
    token: str
    sids: tuple[str, ...]  # one per connection of this process
    entry_size: int
    entries_per_message: int  # batch size; parts per request; 1 for push-single
    ack: bool
    window: int
    duration: float
    drain_timeout: float
    seed: int
    durability: str = "memory"  # push: the sockets' ?durability=


@dataclass
class ConnectionResult:
    sid: str
    sent_entries: int = 0  # written to the socket
    confirmed_entries: int = 0  # acked (push with ack) or answered 2xx (post)
    messages: int = 0  # batches, single entries or requests
    bad_confirmations: int = 0  # acks or answers that did not list one id per entry
    error: str | None = None


class LoadSession(Protocol):
    """One connection's load: the same life cycle for WebSocket push and HTTP POST."""

    async def connect(self) -> None: ...
    async def send_until(self, stop_at: float) -> None: ...
    async def drain(self, deadline: float) -> None: ...
    async def close(self) -> None: ...
    def result(self) -> ConnectionResult: ...
