"""The engine's one port: read the first request head, then hand the connection over.

uvicorn creates a FrontProtocol for every accepted connection (it is passed
as uvicorn's ``http`` class). A WebSocket upgrade goes to picows with the
original bytes; anything else goes to uvicorn's httptools protocol and the
Starlette app. Both then own the transport; the front is done.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any

from picows import WSAutoPingStrategy, WSCloseCode
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in picows' stubs
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from engine._core import PushSession
from engine.ws.router import WebSocketRouter

if TYPE_CHECKING:
    from engine.runtime import Runtime

# A request head larger than this is refused (431), as uvicorn and picows do.
MAX_HEAD_BYTES = 16 * 1024
# A client that sends no complete head in this time is dropped (slowloris).
HEAD_TIMEOUT_SECONDS = 10.0
WS_HANDSHAKE_TIMEOUT_SECONDS = 5.0
WS_READ_BUFFER_BYTES = 4 * 1024
WS_SOCKET_RECEIVE_BUFFER_BYTES = 1024 * 1024
# picows refuses a frame above its limit before delivering the frames read just
# before it, and the sessions take nothing once a close went out (it could not
# be acked). A frame up to this much above --max-message-size reaches the
# session instead, which acks what came before it, then closes 1009.
FRAME_SIZE_MARGIN = 1024 * 1024
# On SIGTERM a producer's socket waits this long for Redis to confirm what it
# sent (its acks go out), then closes 1001.
SHUTDOWN_ACK_SECONDS = 5.0

picows_log = logging.getLogger("picows.server")
# picows makes each connection a child Logger of the Logger it is given (named
# by the socket's descriptor): 0.6 KiB of an idle socket's 14 KiB. Given an
# adapter instead it makes none. Its per-connection lines (INFO) show only when
# debugging, and then each connection gets its own name again; its warnings
# name no descriptor otherwise.
picows_quiet_log = logging.LoggerAdapter(picows_log, {})


def picows_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    return picows_log if picows_log.isEnabledFor(logging.INFO) else picows_quiet_log


class TrackedWSProtocol(WSProtocol):  # type: ignore[misc]
    """picows' protocol, registered with uvicorn's connections so that a graceful
    shutdown closes it (1001) and waits for it like any HTTP connection."""

    def __init__(self, router: WebSocketRouter, max_frame_size: int, connections: set[Any]):
        super().__init__(
            None,
            None,
            False,
            router,
            picows_logger(),
            True,  # disconnect on an exception in a listener
            WS_HANDSHAKE_TIMEOUT_SECONDS,
            False,
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,  # no auto ping
            True,  # answer pings
            max_frame_size,
            None,
            WS_READ_BUFFER_BYTES,
        )
        self._connections = connections

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        if isinstance(self.listener, PushSession):
            # It stops reading, acks what Redis confirms (for a while), then 1001.
            self.listener.close(WSCloseCode.GOING_AWAY.value, "server shutting down", SHUTDOWN_ACK_SECONDS)
            return
        if self.listener is not None and not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.GOING_AWAY, b"server shutting down")
        transport.disconnect()


class FrontProtocol(asyncio.Protocol):
    # uvloop's transport keeps the bound data_received of its first protocol after
    # set_protocol, so this object lives as long as the socket: no __dict__.
    __slots__ = ("app_state", "config", "head", "loop", "server_state", "timeout", "transport")

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.timeout: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport.
        self.transport = transport  # type: ignore[assignment]
        self.server_state.connections.add(self)  # type: ignore[arg-type]  # duck-typed: shutdown()
        runtime: Runtime | None = self.app_state.get("runtime")
        if runtime is not None:
            # uvicorn keeps this set for good, and it grows with every crowd of connections.
            runtime.trimmer.watch(self.server_state.connections)
        self.timeout = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self.shutdown)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def data_received(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD_BYTES:
                self._refuse(b"431 Request Header Fields Too Large")
            return
        if end > MAX_HEAD_BYTES:
            self._refuse(b"431 Request Header Fields Too Large")
            return
        if is_websocket_upgrade(bytes(self.head[:end])):
            self._hand_to_websocket()
        else:
            self._hand_to_http()

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _forget(self) -> None:
        self.server_state.connections.discard(self)
        if self.timeout is not None:
            self.timeout.cancel()
            self.timeout = None

    def _refuse(self, status: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.transport.close()
        self._forget()

    def _hand_to_http(self) -> None:
        assert self.transport is not None
        self._forget()
        http = HttpToolsProtocol(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        self.transport.set_protocol(http)
        http.connection_made(self.transport)
        http.data_received(bytes(self.head))

    def _hand_to_websocket(self) -> None:
        assert self.transport is not None
        self._forget()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # A fixed receive buffer bounds every read: picows doubles its read
            # buffer whenever a read fills it, and with the kernel's autotuning
            # a flooding producer grew it past 100 MB of engine RSS.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WS_SOCKET_RECEIVE_BUFFER_BYTES)
        # engine.asgi puts the runtime into the lifespan state uvicorn hands every connection.
        runtime: Runtime = self.app_state["runtime"]
        protocol = TrackedWSProtocol(
            runtime.ws_router,
            runtime.config.max_message_size + FRAME_SIZE_MARGIN,
            self.server_state.connections,
        )
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        view = memoryview(self.head)
        while view:
            buffer = protocol.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
        view.release()
        self.head = bytearray()
        self.transport = None  # the WebSocket protocol has it now


def is_websocket_upgrade(head: bytes) -> bool:
    """A GET whose ``Upgrade`` header names websocket."""
    if not head.startswith(b"GET "):
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade":
            return b"websocket" in value.lower()
    return False
