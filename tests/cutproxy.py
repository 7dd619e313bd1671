"""A TCP proxy in front of Redis that a test can cut, to prove that nothing
acknowledged is lost when the engine's Redis connection breaks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class CutProxy:
    """Listens on 127.0.0.1:port and forwards to a Redis unix socket.

    ``cut()`` aborts every open connection; ``refuse(True)`` makes new ones
    fail at once, as a Redis that is down would; ``hold_replies(True)`` keeps
    what Redis sends until ``hold_replies(False)``, as a slow node would.
    """

    def __init__(self, redis_socket: str):
        self.redis_socket = redis_socket
        self.port = 0
        self.refusing = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.transports: set[Any] = set()
        self.server: asyncio.Server | None = None
        self.replies_flowing = asyncio.Event()
        self.replies_flowing.set()

    def start(self) -> CutProxy:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.redis_socket)
        pair = (client_writer.transport, upstream_writer.transport)
        self.transports.update(pair)
        await asyncio.gather(
            self._pump(client_reader, upstream_writer),
            self._pump(upstream_reader, client_writer, self.replies_flowing),
        )
        self.transports.difference_update(pair)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event | None = None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if flowing is not None:
                    await flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        def abort_all() -> None:
            for transport in list(self.transports):
                transport.abort()

        self.loop.call_soon_threadsafe(abort_all)

    def refuse(self, refusing: bool) -> None:
        self.refusing = refusing

    def hold_replies(self, holding: bool) -> None:
        event = self.replies_flowing
        self.loop.call_soon_threadsafe(event.clear if holding else event.set)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def shut_down() -> None:
            for transport in list(self.transports):
                transport.abort()
            if self.server is not None:
                self.server.close()
                await self.server.wait_closed()
            await asyncio.sleep(0.05)  # let the aborted transports close their sockets

        asyncio.run_coroutine_threadsafe(shut_down(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
