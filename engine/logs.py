"""One logging setup for the engine, uvicorn and picows, applied in every worker process."""

from __future__ import annotations

from typing import Any

TRACE = 5  # uvicorn's level below DEBUG


def logging_config(level: str) -> dict[str, Any]:
    root_level = TRACE if level == "trace" else level.upper()
    quiet = "DEBUG" if level in ("debug", "trace") else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["stderr"], "level": root_level},
        "loggers": {
            # picows logs every connection at INFO and uvicorn every request:
            # at ingest rates that is noise, so they speak only when debugging.
            "picows": {"level": quiet},
            "uvicorn.access": {"level": quiet},
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
        },
    }
