"""bench.profile's report: self time per frame and per layer, idle left out."""

from __future__ import annotations

from pathlib import Path

from bench.profile import layer_of, report


def test_frames_are_put_in_their_layer() -> None:
    assert layer_of("PushSession__handle (push_session.pxi:301)") == "Cython core"
    assert layer_of("__Pyx_GetItemInt_Fast (inspect.pxi:19)") == "Cython core"
    assert layer_of("run (engine/server.py:90)") == "Python"
    assert layer_of("_PyEval_EvalFrameDefault (ceval.c:5000)") == "CPython runtime"
    assert layer_of("writev (libc.so.6)") == "libc / system calls"
    assert layer_of("epoll_wait (libc.so.6)").startswith("idle")
    assert layer_of("uv__io_poll (linux.c:1517)").startswith("other native")


def test_the_report_counts_busy_self_time(tmp_path: Path) -> None:
    collapsed = tmp_path / "profile.collapsed.txt"
    collapsed.write_text(
        "main (x.py:1);uv__io_poll (linux.c:1);epoll_wait (libc.so.6) 60\n"
        "main (x.py:1);PushSession__handle (push_session.pxi:301) 30\n"
        "main (x.py:1);PushSession__handle (push_session.pxi:301);writev (libc.so.6) 10\n"
    )
    text = report(collapsed)
    assert "100 samples, 60.0% idle" in text
    assert " 75.0%  Cython core" in text and " 25.0%  libc / system calls" in text
    assert "[Cython core] PushSession__handle" in text.splitlines()[4]
