"""PTG data store engine: live sensor data over WebSocket and REST, stored in Redis Streams.

Embedding: ``engine.server.run(engine.config.Config(...))`` serves until SIGINT/SIGTERM.
"""

import os
import sys

__version__ = "0.1.0"


def _load_unmask_into_global_scope() -> None:
    """picows takes its WebSocket unmask function from the dynamic linker at import:
    engine._unmask, loaded first and globally, gives it one that keeps payloads
    in the cache (ext/unmask.pyx says why). After picows, it changes nothing."""
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_GLOBAL)
    try:
        from engine import _unmask  # noqa: F401
    except ImportError:
        pass  # not built (a source checkout before build_ext): picows' own is used
    finally:
        sys.setdlopenflags(flags)


_load_unmask_into_global_scope()
