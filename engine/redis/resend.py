"""Commands a Redis Cluster did not execute, sent again where they belong.

A node answers MOVED (the slot is another master's now), ASK (the slot is
being migrated and this key is already on the target), TRYAGAIN (a
multi-key command during a migration) or CLUSTERDOWN (the cluster is not
whole) without executing the command. The ingest connections keep what
they wrote until it is answered (``keeps_sent``) and hand such a command
here with a ResendHandle; its answer from the right node completes the
producer's message as if the first node had given it, so a resharding
neither closes producers nor loses or doubles an entry.

Order: a command redirected to a master this process is connected to is
sent there at once, while the first node's replies are read, so commands
to one stream reach its new master in the order they were first written.
Only a target not connected yet, TRYAGAIN and CLUSTERDOWN wait, in a queue
sent one command at a time. The producer whose command is being resent
reads nothing new meanwhile, and a producer whose messages in flight went
by an older slot map sends nothing new until they are stored (PushSession,
Shards.version): its next message may go straight to the new master, which
must not store it before the older ones come back there redirected. A
command still refused after RESEND_SECONDS gets its last answer, and its
producer is closed 1011 as before. What pipelining cannot order: when a
slot comes back between two commands already on their way, the second is
stored and the first resent after it (acks stay in order and give the ids
as stored).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from dataclasses import dataclass

from hiredis import ReplyError

from engine._core import RedisConnection, RedisPipe, RedisUnavailable, ResendHandle, Shards, worth_retrying
from engine.redis.cluster import ClusterMap
from engine.redis.link import CONNECT_ERRORS, RedisAddress, url_at

log = logging.getLogger("engine.redis")

RESEND_SECONDS = 5.0
# Between tries while the cluster is down or a slot's new master is not known yet.
RETRY_PAUSE_SECONDS = 0.05
_ASKING = b"*1\r\n$6\r\nASKING\r\n"


@dataclass
class _Refused:
    error: ReplyError
    command: bytes
    handle: ResendHandle
    deadline: float
    order: int  # when it was first refused: the queue keeps this order


def command_key(command: bytes) -> bytes:
    """The first argument after the name of one framed command (its key)."""
    position = command.index(b"\r\n") + 2  # after *<count>
    for _ in range(2):  # the name, then the key
        end = command.index(b"\r\n", position)
        length = int(command[position + 1 : end])
        start = end + 2
        position = start + length + 2
    return command[start : start + length]


def redirect_target(error: ReplyError) -> tuple[str, str, int] | None:
    """("MOVED" or "ASK", host, port) of a redirect; None for other errors."""
    kind, _, rest = str(error).partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    host, _, port = rest.split(" ")[-1].rpartition(":")
    return kind, host, int(port)


class Resender:
    """Sends again what the cluster's nodes refused to execute (``resend`` is the
    ingest connections' ``on_resend``)."""

    def __init__(self, cluster: ClusterMap, shards: Shards):
        self.cluster = cluster
        self.shards = shards
        self._waiting: list[_Refused] = []  # by first refusal
        self._current: _Refused | None = None  # the one being sent from the queue
        self._refusals = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._elsewhere: dict[tuple[str, int], RedisConnection] = {}  # ASK targets that are no master yet

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._send_waiting())

    async def close(self) -> None:
        """After the ingest connections closed: what still waits fails."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail_waiting("the engine is stopping")
        for connection in self._elsewhere.values():
            connection.close()

    def resend(self, error: ReplyError, command: bytes, handle: ResendHandle) -> None:
        """The connections' ``on_resend``. Never answers ``handle`` before it returns."""
        self._refusals += 1
        deadline = asyncio.get_running_loop().time() + RESEND_SECONDS
        self._try(_Refused(error, command, handle, deadline, self._refusals))

    def _try(self, refused: _Refused) -> None:
        if self._closed:
            asyncio.get_running_loop().call_soon(refused.handle.fail, "the engine is stopping")
            return
        # Behind a command that waits, a command waits too: order is kept.
        if not self._waiting and self._current is None and self._send_now(refused):
            return
        bisect.insort(self._waiting, refused, key=lambda waiting: waiting.order)
        self._wake.set()

    def _fail_waiting(self, reason: str) -> None:
        waiting, self._waiting = self._waiting, []
        for refused in waiting:
            refused.handle.fail(reason)

    # -- at once --------------------------------------------------------

    def _send_now(self, refused: _Refused) -> bool:
        """Send to a redirect's target if this process is connected to it."""
        target = redirect_target(refused.error)
        if target is None:
            return False
        kind, host, port = target
        connection = self._master_at(host, port)
        if connection is None:
            return False
        self._send(connection, refused, asking=kind == "ASK")
        return True

    def _master_at(self, host: str, port: int) -> RedisConnection | None:
        for node, cluster_node in enumerate(self.cluster.nodes):
            if (cluster_node.address.host, cluster_node.address.port) == (host, port):
                return self.shards.pipe_for_node(node)
        return None

    def _send(self, connection: RedisConnection, refused: _Refused, asking: bool) -> None:
        try:
            future = _send_raw(connection, refused.command, asking)
        except RedisUnavailable as error:
            refused.handle.fail(str(error))
            return
        future.add_done_callback(lambda done: self._answered(refused, done))

    def _answered(self, refused: _Refused, done: asyncio.Future[list[object]]) -> None:
        if done.cancelled() or done.exception() is not None:
            refused.handle.fail(str(done.exception() or "cancelled"))
            return
        reply = done.result()[-1]
        if _try_again(refused, reply):
            self._try(refused)
            return
        refused.handle.answer(reply)

    # -- after a wait -----------------------------------------------------

    async def _send_waiting(self) -> None:
        """One at a time, each until it is answered: a command that succeeded
        while one before it was still refused would be stored out of order."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                refused = self._current = self._waiting.pop(0)
                try:
                    reply = await self._until_answered(refused)
                except RedisUnavailable as error:
                    refused.handle.fail(str(error))
                except Exception:
                    log.exception("cannot send a refused command again")
                    refused.handle.fail("internal error while resending")
                else:
                    refused.handle.answer(reply)  # still refused after its deadline: the producer is told
                finally:
                    self._current = None

    async def _until_answered(self, refused: _Refused) -> object:
        while True:
            connection, asking = await self._target_of(refused)
            if connection is None:
                return refused.error
            reply = (await _send_raw(connection, refused.command, asking))[-1]
            if not _try_again(refused, reply):
                return reply
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def _target_of(self, refused: _Refused) -> tuple[RedisConnection | None, bool]:
        """Where ``refused`` can go now, waiting (until its deadline) for a slot's
        master to be known or the cluster to be whole again. A command that
        waited behind others past its deadline still gets one look."""
        loop = asyncio.get_running_loop()
        target = redirect_target(refused.error)
        first = True
        while first or loop.time() < refused.deadline:
            first = False
            if target is not None and target[0] == "ASK":
                connection = self._master_at(*target[1:]) or await self._connect_elsewhere(*target[1:])
                if connection is not None:
                    return connection, True
            else:
                self.cluster.redirected(refused.error)  # read the map again
                connection = self.shards.pipe_for_key(command_key(refused.command))
                expected = target is None or connection is self._master_at(*target[1:])
                if connection is not None and expected:
                    return connection, False
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
        return None, False

    async def _connect_elsewhere(self, host: str, port: int) -> RedisConnection | None:
        connection = self._elsewhere.get((host, port))
        if connection is not None and connection.connected:
            return connection
        with contextlib.suppress(*CONNECT_ERRORS):
            address = RedisAddress(url_at(self.cluster.seed_url, host, port))
            connection = await address.open(RedisPipe)
            self._elsewhere[(host, port)] = connection
            return connection
        return None


def _try_again(refused: _Refused, reply: object) -> bool:
    """Whether ``reply`` refuses ``refused`` once more with time left to try again
    (it then becomes the error the next try goes by)."""
    if not worth_retrying(reply) or asyncio.get_running_loop().time() >= refused.deadline:
        return False
    refused.error = reply  # type: ignore[assignment]
    return True


def _send_raw(connection: RedisConnection, command: bytes, asking: bool) -> asyncio.Future[list[object]]:
    """``command`` on ``connection``, after ASKING when an ASK sent it there."""
    if asking:
        return connection.send_raw(_ASKING + command, 2)
    return connection.send_raw(command, 1)
