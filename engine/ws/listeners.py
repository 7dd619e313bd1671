"""picows listeners shared by the WebSocket endpoints."""

from __future__ import annotations

from picows import WSCloseCode, WSListener, WSTransport

from engine._core import Counters, close_reason


class ClosingListener(WSListener):
    """Completes the handshake, then closes at once with a code and a reason.

    Used where the protocol asks for a close code rather than an HTTP status
    (a bad stream id: 1008).
    """

    def __init__(self, code: WSCloseCode, reason: str, counters: Counters):
        self.code = code
        self.reason = close_reason(reason)
        self.counters = counters

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.counters.record_close(self.code.value)
        transport.send_close(self.code, self.reason)
        transport.disconnect()
