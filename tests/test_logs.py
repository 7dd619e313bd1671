"""What the engine logs: a line per HTTP request (unless --no-access-log), JSON
lines with --log-format json, and one line per WebSocket it closes with a
code of 1002 or more, naming the peer, the stream, the code and the reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from pathlib import Path

import httpx
import websockets
from websockets.exceptions import ConnectionClosed

from engine.front import picows_logger
from tests.conftest import EngineProcess


def log_after(engine: EngineProcess, text: str, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while text not in engine.log():
        assert time.monotonic() < deadline, f"{text!r} not logged: {engine.log()[-1500:]}"
        time.sleep(0.05)
    return engine.log()


def test_requests_are_logged_unless_turned_off(redis_url: str, tmp_path: Path) -> None:
    logged = EngineProcess(tmp_path / "on", redis_url, ["--log-level", "info"]).start()
    quiet = EngineProcess(tmp_path / "off", redis_url, ["--log-level", "info", "--no-access-log"]).start()
    try:
        for engine in (logged, quiet):
            assert httpx.get(f"{engine.base_url}/streams").status_code == 401
            assert httpx.get(f"{engine.base_url}/ping").status_code == 200
        log_after(logged, '"GET /ping HTTP/1.1" 200')
        assert '"GET /streams HTTP/1.1" 401' in logged.log()
        # A token in a query string is a credential: never written to the log.
        token = logged.token()
        assert httpx.get(f"{logged.base_url}/streams?info=false&token={token}").status_code == 200
        log_after(logged, '"GET /streams?info=false&token=*** HTTP/1.1" 200')
        assert token not in logged.log()
        time.sleep(0.3)
        assert "GET /ping" not in quiet.log()
    finally:
        logged.stop()
        quiet.stop()


def test_json_lines_and_a_line_per_refused_socket(redis_url: str, tmp_path: Path, sid: str) -> None:
    engine = EngineProcess(
        tmp_path / "json", redis_url, ["--log-level", "info", "--log-format", "json"]
    ).start()
    try:
        token = engine.token()

        async def refused() -> None:
            url = f"{engine.ws_url}/data/{sid}/push?token={token}&batch=true"
            async with websockets.connect(url) as producer:
                await producer.send("not json")
                await producer.send(b"blob")
                with contextlib.suppress(ConnectionClosed):
                    await asyncio.wait_for(producer.recv(), 10)

        asyncio.run(refused())
        text = log_after(engine, "closed 1007")
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert all({"time", "level", "logger", "message", "pid"} <= line.keys() for line in lines)
        (closed,) = [line for line in lines if "closed 1007" in line["message"]]
        assert closed["logger"] == "engine.ws" and closed["level"] == "info"
        assert f"on {sid} closed 1007" in closed["message"] and "127.0.0.1:" in closed["message"]
        assert "Traceback" not in text
    finally:
        engine.stop()


def test_picows_names_each_connection_only_when_its_lines_are_shown(
    redis_url: str, tmp_path: Path, sid: str
) -> None:
    """picows makes a Logger per connection (0.6 KiB of an idle socket) when given
    a Logger: the engine gives it one only at --log-level debug, where its lines
    name each connection by descriptor."""
    engine = EngineProcess(tmp_path / "debug", redis_url, ["--log-level", "debug"]).start()
    try:
        token = engine.token()

        async def push_one() -> None:
            async with websockets.connect(
                f"{engine.ws_url}/data/{sid}/push?token={token}&ack=true"
            ) as producer:
                await producer.send(b"entry")
                await asyncio.wait_for(producer.recv(), 10)

        asyncio.run(push_one())
        text = log_after(engine, "New connection accepted")
        accepted = [line for line in text.splitlines() if "New connection accepted" in line]
        assert re.search(r"picows\.server\.\d+", accepted[-1]), accepted[-1]
    finally:
        engine.stop()


def test_picows_gets_no_logger_to_make_children_of_when_it_is_quiet() -> None:
    picows = logging.getLogger("picows")
    level = picows.level
    try:
        picows.setLevel(logging.WARNING)
        assert not isinstance(picows_logger(), logging.Logger)
        picows.setLevel(logging.DEBUG)
        assert picows_logger() is logging.getLogger("picows.server")
    finally:
        picows.setLevel(level)
