"""Builds the Cython extensions from ``ext/``: ``engine._core`` (the engine's
core, one module made of included parts) and ``engine._unmask`` (picows'
WebSocket unmasking with ordinary stores, see ext/unmask.pyx).

Build switches (environment variables, as in uvloop and asyncpg):
  PTG_DEBUG_BUILD=1  annotate (.html next to the sources), line tracing,
                     bounds/wrap-around checks and assertions kept, -O0 -g.
  PTG_ASAN_BUILD=1   compile and link with AddressSanitizer.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("PTG_DEBUG_BUILD") == "1"
asan = os.environ.get("PTG_ASAN_BUILD") == "1"

compile_args = ["-O0", "-g3"] if debug else ["-O3"]
link_args: list[str] = []
macros: list[tuple[str, str | None]] = []
if debug:
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
else:
    macros += [("CYTHON_WITHOUT_ASSERTIONS", None)]
if asan:
    compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    link_args += ["-fsanitize=address"]

directives = {
    "language_level": "3",
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": True,
    "linetrace": debug,
    "profile": debug,
    "embedsignature": True,
    # No pickling: nothing of the core is meant to cross processes.
    "auto_pickle": False,
}

extensions = [
    Extension(
        name,
        sources=[source],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name, source in (("engine._core", "ext/_core.pyx"), ("engine._unmask", "ext/unmask.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=debug,
        include_path=["ext"],
    ),
)
