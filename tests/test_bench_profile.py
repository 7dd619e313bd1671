"""bench.profile's report: self time per frame and per layer, idle left out."""

from __future__ import annotations

from pathlib import Path

from bench.profile import collapse_perf_script, layer_of, report


def test_frames_are_put_in_their_layer() -> None:
    assert layer_of("PushSession__handle (push_session.pxi:301)") == "Cython core"
    assert layer_of("__Pyx_GetItemInt_Fast (inspect.pxi:19)") == "Cython core"
    assert layer_of("run (engine/server.py:90)") == "Python"
    assert layer_of("_PyEval_EvalFrameDefault (ceval.c:5000)") == "CPython runtime"
    assert layer_of("writev (libc.so.6)") == "libc / system calls"
    assert layer_of("epoll_wait (libc.so.6)").startswith("idle")
    assert layer_of("uv__io_poll (linux.c:1517)").startswith("other native")
    assert layer_of("gc_collect_main (libpython3.11.so.1.0)") == "CPython runtime"  # perf's frames
    assert layer_of("_copy_to_iter ([kernel.kallsyms])") == "kernel"


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


PERF_SCRIPT = """\
python 4242 [001] 100.000001:   1001001 cpu-clock:ppp:
\t    7f00000010 _copy_from_iter+0x5a ([kernel.kallsyms])
\t    7f00000020 unix_stream_sendmsg+0x1f0 ([kernel.kallsyms])
\t    7f00000030 __GI___writev+0x12 (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t    7f00000040 __pyx_f_6engine_5_core_9RedisPipe_flush+0x99 (/x/engine/_core.cpython-311-x86_64-linux-gnu.so)

python 4242 [001] 100.001002:   1001001 cpu-clock:ppp:
\t    7f00000050 apply_mask_avx512+0x10 (/x/engine/_unmask.cpython-311-x86_64-linux-gnu.so)
\t    7f00000040 __pyx_f_6engine_5_core_9RedisPipe_flush+0x99 (/x/engine/_core.cpython-311-x86_64-linux-gnu.so)

python 4242 [001] 100.002003:   1001001 cpu-clock:ppp:
\t    7f00000010 _copy_from_iter+0x5a ([kernel.kallsyms])
\t    7f00000020 unix_stream_sendmsg+0x1f0 ([kernel.kallsyms])
\t    7f00000030 __GI___writev+0x12 (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t    7f00000040 __pyx_f_6engine_5_core_9RedisPipe_flush+0x99 (/x/engine/_core.cpython-311-x86_64-linux-gnu.so)
"""


def test_perf_samples_become_collapsed_stacks_root_first(tmp_path: Path) -> None:
    stacks = collapse_perf_script(PERF_SCRIPT)
    flush = "__pyx_f_6engine_5_core_9RedisPipe_flush (_core.cpython-311-x86_64-linux-gnu.so)"
    assert stacks == {
        f"{flush};__GI___writev (libc.so.6);unix_stream_sendmsg ([kernel.kallsyms]);"
        "_copy_from_iter ([kernel.kallsyms])": 2,
        f"{flush};apply_mask_avx512 (_unmask.cpython-311-x86_64-linux-gnu.so)": 1,
    }
    collapsed = tmp_path / "profile.collapsed.txt"
    collapsed.write_text("".join(f"{stack} {count}\n" for stack, count in stacks.items()))
    text = report(collapsed)
    assert " 66.7%  kernel" in text and "[kernel] _copy_from_iter" in text
