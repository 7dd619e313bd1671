"""python -m bench's plan, report and plots, from figures given here (the
workloads themselves run in bench/ and tests/test_loadgen_smoke.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image

from bench.__main__ import SWEEP_CONNECTIONS, SWEEP_SIZES, Workload, markdown, plots, workloads


def loadgen_result(rate: float, baseline: float, entries: int = 1_000_000) -> dict[str, object]:
    return {
        "pass": True,
        "entries": entries,
        "entries_per_s": rate,
        "baseline_entries_per_s": baseline,
        "baseline_fraction": rate / baseline,
        "engine_cpu_s": 0.4,
        "redis_cpu_s": 1.0,
        "engine_peak_rss_mb": 55.0,
    }


def test_the_plan_sweeps_sizes_and_connections_and_aims_at_a_url(tmp_path: Path) -> None:
    own = workloads(quick=True, cluster=False, out=tmp_path)
    assert [w.sweep for w in own if w.sweep] == [
        *(("entry size", size) for size in SWEEP_SIZES),
        *(("connections", n) for n in SWEEP_CONNECTIONS),
    ]
    assert any("--samples" in w.argv for w in own)
    elsewhere = workloads(
        quick=True, cluster=False, out=tmp_path, target=["--url", "http://h:1", "--redis-url", "redis://r"]
    )
    assert elsewhere and all(w.kind == "loadgen" and "--url" in w.argv for w in elsewhere)


def test_the_report_has_cpu_per_million_and_rss(tmp_path: Path) -> None:
    done = [Workload("W1 ack", ["python", "-m", "bench.loadgen"], "loadgen", loadgen_result(1e6, 0.9e6))]
    text = markdown(done, quick=True)
    assert "| W1 ack | 1,000,000/s | 111.1% | 0.40 | 1.00 | 55.00 |" in text


def test_every_plot_is_drawn(tmp_path: Path) -> None:
    done = [Workload("W1 ack", [], "loadgen", loadgen_result(1e6, 0.9e6))]
    done += [
        Workload(
            f"{size} B", [], "loadgen", loadgen_result(1e7 / size, 1.1e7 / size), sweep=("entry size", size)
        )
        for size in SWEEP_SIZES
    ]
    done += [
        Workload(f"{n} sockets", [], "loadgen", loadgen_result(1e6, n * 3e5), sweep=("connections", n))
        for n in SWEEP_CONNECTIONS
    ]
    (tmp_path / "latency-samples.txt").write_text("".join(f"{0.1 + i / 1000:.4f}\n" for i in range(500)))
    plots(done, tmp_path)
    for name in ("ratio", "entry-size", "connections", "latency-cdf", "cpu"):
        image = matplotlib.image.imread(tmp_path / f"{name}.png")
        assert image.shape[0] >= 100 and image.std() > 0.05, name  # drawn, not blank
