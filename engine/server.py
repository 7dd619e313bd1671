"""Process lifecycle: the embedded Redis, uvicorn with the one-port front, shutdown."""

from __future__ import annotations

import logging
import logging.config
import os
import signal
import sys
from dataclasses import replace
from types import FrameType

import uvicorn

from engine.asgi import EngineApp
from engine.auth import load_or_create_secret
from engine.config import OPTIONS, Config
from engine.front import FrontProtocol
from engine.logs import logging_config
from engine.redis.connect import wait_until_reachable
from engine.redis.embedded import EmbeddedRedis, EmbeddedRedisError
from engine.redis.link import describe, seed_urls
from engine.tls import self_signed

log = logging.getLogger("engine")

# Open sockets get this long to finish after SIGINT/SIGTERM before they are cut.
GRACEFUL_SHUTDOWN_SECONDS = 10


def uvicorn_config(config: Config) -> uvicorn.Config:
    """uvicorn settings for the engine: the front protocol, uvloop, no uvicorn WebSockets."""
    many = config.workers > 1
    return uvicorn.Config(
        # Worker processes are spawned, so they build the app from PTG_* variables.
        "engine.asgi:worker_app" if many else EngineApp(config),
        factory=many,
        host=config.host,
        port=config.port,
        http=FrontProtocol,
        ws="none",
        loop=config.loop,
        lifespan="on",
        workers=config.workers,
        log_config=logging_config(config.log_level, config.log_format, config.access_log),
        log_level=config.log_level,
        access_log=config.access_log,
        ssl_certfile=config.ssl_certfile,
        ssl_keyfile=config.ssl_keyfile,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def export_to_environment(config: Config) -> None:
    """Hand the resolved configuration to spawned worker processes."""
    for option in OPTIONS:
        value = getattr(config, option.name)
        if value is None:
            os.environ.pop(option.env, None)
        else:
            os.environ[option.env] = str(value)


class Stopped(Exception):
    """SIGTERM arrived: unwind so that the embedded Redis is stopped in order."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped


def _stop_self(reason: str) -> None:
    # From the embedded Redis' watcher thread: the same graceful stop as SIGTERM.
    os.kill(os.getpid(), signal.SIGTERM)


def run(config: Config) -> None:
    """Serve until SIGINT or SIGTERM; the embedded Redis (if any) stops after the engine.
    Raises EmbeddedRedisError when the embedded Redis could not be kept running,
    SelfSignedError when --ssl-self-signed could not make its certificate."""
    logging.config.dictConfig(logging_config(config.log_level, config.log_format, config.access_log))
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again
    # with the previous handler: make that handler unwind instead of killing.
    signal.signal(signal.SIGTERM, _raise_stopped)
    embedded: EmbeddedRedis | None = None
    if config.ssl_self_signed:
        cert, key = self_signed(config.data_dir)
        config = replace(config, ssl_certfile=str(cert), ssl_keyfile=str(key), ssl_self_signed=False)
    try:
        if not config.redis_url:
            embedded = EmbeddedRedis(
                config.data_dir, binary=config.redis_server, supervise=True, on_failure=_stop_self
            ).start()
            config = replace(config, redis_url=embedded.url)
        assert config.redis_url is not None
        wait_until_reachable(seed_urls(config.redis_url))
        if not config.secret:
            load_or_create_secret(config.data_dir)  # once, before any worker reads it

        export_to_environment(config)
        scheme = "https" if config.tls else "http"
        log.info(
            "engine serving %s://%s:%d (WebSockets on the same port), Redis at %s",
            scheme,
            config.host,
            config.port,
            f"embedded ({embedded.server})" if embedded else describe(config.redis_url),
        )
        server_config = uvicorn_config(config)
        if config.workers > 1:
            from uvicorn.config import STARTUP_FAILURE
            from uvicorn.supervisors import Multiprocess

            sock = server_config.bind_socket()
            supervisor = Multiprocess(server_config, sockets=[sock])
            supervisor.run()
            # uvicorn exits 3 when one process fails to start (a refused Redis, say);
            # the supervisor of workers just returns after stopping them: exit 3 too.
            if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
                sys.exit(STARTUP_FAILURE)
        else:
            uvicorn.Server(server_config).run()
    except Stopped:
        log.info("stopped by SIGTERM")
    finally:
        if embedded is not None:
            embedded.stop()
    if embedded is not None and embedded.failure:
        raise EmbeddedRedisError(embedded.failure)
