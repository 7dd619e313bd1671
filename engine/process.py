"""Processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Loaded once, here: a child between fork and exec must not load libraries
# (another thread of the parent may have held the loader's lock at the fork).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """The kernel sends this process SIGTERM when its parent dies for any reason,
    SIGKILL included (Linux only). Call it in the child itself: between fork and
    exec (``preexec_fn``), or first thing in a spawned worker."""
    if _LIBC is None:
        return
    parent = os.getppid()
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
