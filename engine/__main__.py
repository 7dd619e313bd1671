"""``python -m engine`` and the ``ptg-engine`` script."""

import sys

from engine.allocator import serve_on_system_malloc


def program() -> int:
    # Before the engine's imports, which the new program would only repeat.
    serve_on_system_malloc()
    from engine.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(program())
