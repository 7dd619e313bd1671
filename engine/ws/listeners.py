"""picows listeners shared by the WebSocket endpoints."""

from __future__ import annotations

import logging

from picows import WSCloseCode, WSListener, WSTransport

from engine._core import Counters, close_reason

log = logging.getLogger("engine.ws")


class ClosingListener(WSListener):
    """Completes the handshake, then closes at once with a code and a reason.

    Used where the protocol asks for a close code rather than an HTTP status
    (a bad stream id: 1008).
    """

    def __init__(self, code: WSCloseCode, reason: str, counters: Counters, path: str = "?"):
        self.code = code
        self.reason = close_reason(reason)
        self.counters = counters
        self.path = path

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.counters.record_close(self.code.value)
        peer = transport.underlying_transport.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if peer else "?"
        log.info("socket of %s on %s closed %d: %s", where, self.path, self.code.value, self.reason.decode())
        transport.send_close(self.code, self.reason)
        transport.disconnect()
