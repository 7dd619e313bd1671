"""picows listeners shared by the WebSocket endpoints."""

from __future__ import annotations

from picows import WSCloseCode, WSListener, WSTransport


class ClosingListener(WSListener):
    """Completes the handshake, then closes at once with a code and a reason.

    Used where the protocol asks for a close code rather than an HTTP status
    (a bad stream id: 1008).
    """

    def __init__(self, code: WSCloseCode, reason: str):
        self.code = code
        self.reason = reason.encode()[:123]  # a close frame's reason fits in 123 bytes

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send_close(self.code, self.reason)
        transport.disconnect()
