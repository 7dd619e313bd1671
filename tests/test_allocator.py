"""The engine serves on glibc's malloc (engine/allocator.py): started as a
program it starts itself again, same process, with PYTHONMALLOC=malloc, unless
an allocator was chosen; and after a crowd of sockets left, its RSS comes back
near where it was (on pymalloc it stayed a fifth higher after 2,000)."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from picows import WSListener, ws_connect

from engine.launcher import EngineProcess, free_port

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc and /proc"
)

CROWD = 2000
# RSS after the crowd left, against before: 1.06 on malloc, 1.21 on pymalloc.
RSS_AFTER_CROWD_AT_MOST = 1.12


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {name.decode(): value.decode() for name, _, value in pairs}


def test_the_engine_serves_on_malloc_in_the_process_it_was_started_as(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)  # the engine's own choice, not the runner's
    engine = EngineProcess(tmp_path, redis_url, ["--log-level", "warning"])
    engine.start()
    try:
        assert environment_of(engine.pid)["PYTHONMALLOC"] == "malloc"
        process = psutil.Process(engine.pid)
        listening = [c for c in process.net_connections() if c.status == psutil.CONN_LISTEN]
        assert [c.laddr.port for c in listening] == [engine.port]
    finally:
        engine.stop()


def test_an_allocator_the_user_chose_is_kept(redis_url: str, tmp_path: Path) -> None:
    chosen = EngineProcess(tmp_path, redis_url, ["--log-level", "warning"], env={"PYTHONMALLOC": "pymalloc"})
    chosen.start()
    try:
        assert environment_of(chosen.pid)["PYTHONMALLOC"] == "pymalloc"
    finally:
        chosen.stop()


def test_the_script_starts_itself_again_with_its_arguments(redis_url: str, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("ptg-engine")
    if not script.exists():
        pytest.skip("the ptg-engine script is not installed beside this interpreter")
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC" and not k.startswith("PTG_")}
    process = subprocess.Popen(
        [str(script), "serve", "--port", str(port), "--data-dir", str(tmp_path), "--redis-url", redis_url],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(c.laddr.port == port for c in psutil.Process(process.pid).net_connections()):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert environment_of(process.pid)["PYTHONMALLOC"] == "malloc"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("flag", ["-X dev", "-E", "-I"])
def test_debug_hooks_and_an_ignored_environment_keep_pymalloc(flag: str) -> None:
    code = "from engine.allocator import wants_system_malloc; print(wants_system_malloc())"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    root = str(Path(__file__).resolve().parent.parent)
    output = subprocess.run(
        [sys.executable, *flag.split(), "-c", f"import sys; sys.path.insert(0, {root!r}); {code}"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert output.strip() == "False"


def test_a_plain_interpreter_on_glibc_wants_malloc() -> None:
    code = "from engine.allocator import wants_system_malloc; print(wants_system_malloc())"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    plain = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    assert plain.stdout.strip() == "True"


def test_rss_comes_back_after_a_crowd_of_sockets_left(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CROWD + 500:
        pytest.skip(f"a descriptor limit of {hard} is too low for {CROWD} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    crowded = EngineProcess(tmp_path, redis_url, ["--log-level", "warning"])
    crowded.start()
    token = crowded.token()
    try:
        process = psutil.Process(crowded.pid)
        time.sleep(1)  # started
        before = process.memory_info().rss

        async def crowd() -> None:
            urls = [f"{crowded.ws_url}/data/{tmp_path.name}-{i}/push?token={token}" for i in range(CROWD)]
            opened = []
            for start in range(0, CROWD, 250):
                opened += await asyncio.gather(
                    *(ws_connect(WSListener, url) for url in urls[start : start + 250])
                )
            await asyncio.sleep(0.5)
            assert process.memory_info().rss > before + CROWD * 8 * 1024  # they cost memory while open
            for transport, _ in opened:
                transport.disconnect()
            await asyncio.sleep(0.5)

        asyncio.run(crowd())
        # The engine trims on its next checks (every 5 s) after they left.
        deadline = time.monotonic() + 30
        while process.memory_info().rss > before * RSS_AFTER_CROWD_AT_MOST and time.monotonic() < deadline:
            time.sleep(0.5)
        assert process.memory_info().rss <= before * RSS_AFTER_CROWD_AT_MOST, (
            before,
            process.memory_info().rss,
        )
    finally:
        crowded.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
