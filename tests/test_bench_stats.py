"""The benchmarks' percentiles: from every sample, interpolated between ranks."""

from __future__ import annotations

import math

from bench.harness import percentiles, quantile


def test_p99_of_a_hundred_samples_is_not_the_maximum() -> None:
    samples = [ms * 1_000_000 for ms in range(1, 101)]  # 1..100 ms
    result = percentiles(samples)
    assert result["p50 ms"] == 50.5
    assert math.isclose(result["p99 ms"], 99.01)
    assert math.isclose(result["p99.9 ms"], 99.901)
    assert result["max ms"] == 100.0
    assert result["samples"] == 100


def test_quantiles_of_one_sample_and_of_none() -> None:
    assert quantile([7], 0.99) == 7
    assert percentiles([3_000_000])["p99 ms"] == 3.0
    empty = percentiles([])
    assert empty["samples"] == 0 and math.isnan(empty["p99 ms"])
