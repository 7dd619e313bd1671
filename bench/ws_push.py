"""A WebSocket producer on /data/{sid}/push (picows client on uvloop).

Batch mode sends the header of END offsets (what ptgctl sends) and the blob;
single mode sends one binary message per entry. Both are built once. Without
acks the producer stops writing while the socket's write buffer is above its
high-water mark; with acks it keeps at most ``window`` messages unacknowledged.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import urllib.parse

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.plan import ConnectionResult, LoadPlan

# Without acks, yield to the event loop after about this many bytes of sends
# (acks, pause_writing and the stop timer need the loop to run).
BURST_BYTES = 256 * 1024
POLL_SECONDS = 0.002


def push_url(base_url: str, sid: str, batch: bool, ack: bool, token: str, durability: str = "memory") -> str:
    fields = {"batch": "true" if batch else "false", "ack": "true" if ack else "false", "token": token}
    if durability != "memory":
        fields["durability"] = durability
    query = urllib.parse.urlencode(fields)
    return "ws" + base_url[4:] + f"/data/{urllib.parse.quote(sid, safe='')}/push?{query}"


def end_offsets_header(entry_size: int, count: int) -> bytes:
    """The batch header as ptgctl writes it: cumulative lengths, the last equal to the blob's."""
    return json.dumps([entry_size * (i + 1) for i in range(count)], separators=(",", ":")).encode()


class PushProducer(WSListener):
    """One producer socket; the listener object is the session (``ws_connect`` gets ``lambda: self``)."""

    def __init__(self, plan: LoadPlan, sid: str):
        super().__init__()
        self.plan = plan
        self.sid = sid
        self.batch = plan.mode == "push-batch"
        per_message = plan.entries_per_message if self.batch else 1
        self.per_message = per_message
        self.blob = random.Random(plan.seed).randbytes(plan.entry_size * per_message)
        self.header = end_offsets_header(plan.entry_size, per_message) if self.batch else None
        self.window = plan.window if plan.ack else sys.maxsize
        message_bytes = len(self.blob) + len(self.header or b"")
        self.burst = plan.window if plan.ack else max(1, BURST_BYTES // max(1, message_bytes))
        self.transport: WSTransport | None = None
        self.wake = asyncio.Event()
        self.paused = False
        self.stopping = False
        self.closing = False
        self.disconnected = False
        self.in_flight = 0
        self.messages = 0
        self.acked_entries = 0
        self.bad_acks = 0
        self.error: str | None = None

    # -- picows callbacks -------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            ids = frame.get_payload_as_bytes()
            count = ids.count(b",") + 1 if ids else 0
            if count != self.per_message:
                self.bad_acks += 1
            self.acked_entries += count
            self.in_flight -= 1
            self.wake.set()
        elif kind == WSMsgType.CLOSE:
            code = frame.get_close_code()
            if not self.closing or code != WSCloseCode.OK:
                self.error = f"engine closed the socket: {code.value} {frame.get_close_reason()}"
            if not transport.is_close_frame_sent:
                transport.send_close(code)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True
        if not self.closing and self.error is None:
            self.error = "connection lost"
        self.wake.set()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.wake.set()

    # -- the load -----------------------------------------------------------

    async def connect(self) -> None:
        url = push_url(
            self.plan.base_url, self.sid, self.batch, self.plan.ack, self.plan.token, self.plan.durability
        )
        await ws_connect(lambda: self, url, websocket_handshake_timeout=10)

    def _stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def send_until(self, stop_at: float) -> None:
        transport = self.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        timer = loop.call_later(max(0.0, stop_at - time.monotonic()), self._stop)
        send = transport.send
        header, blob = self.header, self.blob
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        ack, window, burst = self.plan.ack, self.window, self.burst
        sent = 0
        try:
            while not (self.stopping or self.disconnected):
                if self.paused or self.in_flight >= window:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                for _ in range(burst):
                    if header is not None:
                        send(text, header)
                    send(binary, blob)
                    sent += 1
                    if ack:
                        self.in_flight += 1
                    if self.paused or self.in_flight >= window:
                        break
                else:
                    await asyncio.sleep(0)
        finally:
            timer.cancel()
            self.messages = sent

    async def drain(self, deadline: float) -> None:
        """With acks: until every message is acked; without: until the write buffer is empty."""
        transport = self.transport
        assert transport is not None
        while not self.disconnected and time.monotonic() < deadline:
            if self.plan.ack:
                if self.in_flight <= 0:
                    return
            elif transport.underlying_transport.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(POLL_SECONDS)
        if self.plan.ack and self.in_flight > 0 and self.error is None:
            self.error = f"{self.in_flight} messages were never acked"

    async def close(self) -> None:
        transport = self.transport
        if transport is None or self.disconnected:
            return
        self.closing = True
        transport.send_close(WSCloseCode.OK)
        try:
            await asyncio.wait_for(transport.wait_disconnected(), 10.0)
        except Exception:  # timeout, or the disconnect's own error: the counts are already taken
            transport.disconnect(graceful=False)

    def result(self) -> ConnectionResult:
        return ConnectionResult(
            sid=self.sid,
            sent_entries=self.messages * self.per_message,
            confirmed_entries=self.acked_entries,
            messages=self.messages,
            bad_confirmations=self.bad_acks,
            error=self.error,
        )
