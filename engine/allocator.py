"""The engine serves on the C library's malloc rather than Python's small-object
allocator (pymalloc).

pymalloc gives a 1 MiB arena back only once every object in it is gone. A crowd
of sockets fills dozens of arenas, and the few objects made during the crowd
that outlive it (free lists of uvloop's handles, grown tables) pin them: after
5,000 producer sockets left, engine RSS stayed 72% above its level before they
opened (+122% after 9,000). On glibc's malloc those objects pin 4 KiB pages
instead, which ``malloc_trim`` (engine.memory) returns around them: +9% after
9,000. The hot paths did not slow down (W1, W2 and W3 with acks, interleaved
runs).

The allocator is chosen when the interpreter starts, so the program
(``python -m engine``, ``ptg-engine``) starts itself again in the same process
(``exec``: same pid, arguments and descriptors) with ``PYTHONMALLOC=malloc``,
before its imports (about 20 ms). Setting ``PYTHONMALLOC`` yourself (``pymalloc``
to keep Python's) skips this; so does embedding (engine.server.run).
"""

from __future__ import annotations

import os
import platform
import sys

ALLOCATOR_VARIABLE = "PYTHONMALLOC"


def wants_system_malloc() -> bool:
    """Whether this interpreter should be started again on malloc: on glibc (whose
    freed pages malloc_trim returns), unless an allocator was chosen already, debug
    hooks are on (-X dev) or the interpreter ignores the environment (-E, -I)."""
    return (
        sys.platform.startswith("linux")
        and platform.libc_ver()[0] == "glibc"
        and ALLOCATOR_VARIABLE not in os.environ
        and not sys.flags.dev_mode
        and not sys.flags.ignore_environment
        and bool(sys.executable)
    )


def serve_on_system_malloc() -> None:
    """Replace this process by the same program on malloc, when it wants it; it
    returns only when it does not (or cannot: then pymalloc it is)."""
    if not wants_system_malloc():
        return
    environment = {**os.environ, ALLOCATOR_VARIABLE: "malloc"}
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None: started with the descriptor closed
            stream.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, environment)
    except (OSError, ValueError):  # ValueError: no arguments to start again with (embedded)
        return
