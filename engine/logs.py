"""One logging setup for the engine, uvicorn and picows, applied in every worker process."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

TRACE = 5  # uvicorn's level below DEBUG


_TOKEN_IN_QUERY = re.compile(r"((?:^|[?&])token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Tokens in query strings (WebSocket clients and <img> tags put them there)
    are credentials: the access log shows ``token=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1***", arg) if isinstance(arg, str) and "token=" in arg else arg
                for arg in record.args
            )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid (and the
    exception's text, when there is one), for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def logging_config(level: str, log_format: str = "plain", access_log: bool = True) -> dict[str, Any]:
    root_level = TRACE if level == "trace" else level.upper()
    quiet = "DEBUG" if level in ("debug", "trace") else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
            "json": {"()": JsonFormatter},
        },
        "filters": {"redact_tokens": {"()": RedactTokens}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["redact_tokens"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["stderr"], "level": root_level},
        "loggers": {
            # picows logs every connection at INFO: at ingest rates that is
            # noise, so it speaks only when debugging. Requests are logged
            # unless --no-access-log.
            "picows": {"level": quiet},
            "uvicorn.access": {"level": "INFO" if access_log else "WARNING"},
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
        },
    }
