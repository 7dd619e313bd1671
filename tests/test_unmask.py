"""engine._unmask: picows unmasks client frames with the engine's cache-friendly
function (ext/unmask.pyx), and every payload arrives in Redis byte for byte,
at every length and offset the word loop and picows' own steps share."""

from __future__ import annotations

import os
import subprocess
import sys

import redis
from hypothesis import given
from hypothesis import strategies as st

from engine._unmask import unmask
from tests.conftest import ROOT, EngineProcess, stored
from tests.pushclient import push, push_url


def reference_unmask(data: bytes, mask: int) -> bytes:
    key = mask.to_bytes(4, "little")
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(data))


@given(st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_unmask_is_the_websocket_xor(data: bytes, mask: int) -> None:
    assert unmask(data, mask) == reference_unmask(data, mask)
    assert unmask(unmask(data, mask), mask) == data


def active_after(imports: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", f"{imports}; from engine._unmask import active; print(active())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip() == "True"


def test_picows_takes_it_when_the_engine_is_imported_first() -> None:
    # What `python -m engine` and its workers do: engine/__init__.py runs first.
    assert active_after("import engine; import picows")
    assert active_after("import engine.server")
    # Loaded after picows it changes nothing (picows' own function stays).
    assert not active_after("import picows.picows; import engine")


async def test_payloads_of_every_length_arrive_whole(
    engine: EngineProcess, token: str, store: redis.Redis, sid: str
) -> None:
    # Around the 8-byte words and picows' 64-byte alignment, then frames of many
    # reads; the client masks each frame with its own random key.
    sizes = [*range(0, 140), 1023, 4097, 65_535, 65_536 + 7, 262_144 + 3]
    messages: list[bytes | str] = [os.urandom(size) for size in sizes]
    result = await push(push_url(engine.ws_url, sid, token, ack=True), messages, expect_acks=len(sizes))
    assert [data for _, data in stored(store, sid)] == messages
    assert len(result.acks) == len(sizes)
