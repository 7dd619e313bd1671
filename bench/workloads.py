"""The named workloads, as load generator arguments: one definition for the
suite (``python -m bench``), the regression gate (bench_e2e.py) and the
profiler (``python -m bench.profile``)."""

from __future__ import annotations

# Small entries in batches of 100, four sockets.
W1 = ["push-batch", "--entry-size", "100", "--batch-size", "100", "--connections", "4"]
# One 1 KiB entry per message, four sockets.
W2 = ["push-single", "--entry-size", "1024", "--connections", "4"]
# With acks, one message in flight per socket, as the protocol tells clients
# to send: a round-trip benchmark, next to redis-benchmark -P 1 (one XADD in
# flight per client).
W2_ACK = [*W2, "--ack", "--window", "1", "--baseline-pipeline", "1"]
# Camera-sized frames, two sockets, acked.
W3_ACK = ["push-batch", "--entry-size", "262144", "--batch-size", "1", "--connections", "2", "--ack"]
POST = ["post-data", "--parts", "10", "--entry-size", "1024", "--connections", "4"]
