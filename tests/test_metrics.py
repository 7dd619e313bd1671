"""GET /metrics, parsed with prometheus_client's own parser: the counters move
by exactly what the test's sockets did."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from engine.metrics import SHARE_SECONDS
from tests.conftest import EngineProcess


def scrape(engine: EngineProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, labels without pid)."""
    response = httpx.get(f"{engine.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            samples[(sample.name, labels)] = sample.value
    return samples


def moved(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_counters_move_by_what_was_pushed_and_refused(
    engine: EngineProcess, token: str, sid: str
) -> None:
    before = scrape(engine)
    payloads = [b"a" * 10, b"b" * 20, b"c" * 30]
    header = json.dumps([[sid, 0], [sid, 10], [sid, 30]])
    url = f"{engine.ws_url}/data/{sid}/push?token={token}&ack=true&batch=true&offsets=start"
    async with websockets.connect(url) as producer:
        await producer.send(header)
        await producer.send(b"".join(payloads))
        assert len(str(await asyncio.wait_for(producer.recv(), 10)).split(",")) == 3
        during = scrape(engine)
    # A header that is not JSON: closed 1007.
    async with websockets.connect(url) as producer:
        await producer.send("not json")
        await producer.send(b"blob")  # a header is read with its blob
        try:
            await asyncio.wait_for(producer.recv(), 10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1007
    await asyncio.sleep(0.1)
    after = scrape(engine)

    assert moved(before, after, "ptg_push_entries_total") == 3
    assert moved(before, after, "ptg_push_messages_total") == 4  # header and blob, twice
    assert moved(before, after, "ptg_push_bytes_total") == 60
    assert moved(before, after, "ptg_push_acks_total") == 1
    assert moved(before, after, "ptg_ws_closes_total", code="1007") == 1
    assert moved(before, during, "ptg_sockets", kind="push") == 1
    assert moved(before, after, "ptg_sockets", kind="push") == 0
    assert after[("ptg_redis_connections_up", ())] >= 3
    assert after[("process_resident_memory_bytes", ())] > 0
    # One acked message (the batch): one ack latency sample, within the test's time.
    assert moved(before, after, "ptg_push_ack_latency_seconds_count") == 1
    assert moved(before, after, "ptg_push_ack_latency_seconds_bucket", le="+Inf") == 1
    assert 0 < moved(before, after, "ptg_push_ack_latency_seconds_sum") < 10


async def test_every_acked_single_message_has_its_latency_counted(
    engine: EngineProcess, token: str, sid: str
) -> None:
    before = scrape(engine)
    async with websockets.connect(f"{engine.ws_url}/data/{sid}/push?token={token}&ack=true") as producer:
        for number in range(25):
            await producer.send(b"%d" % number)
        for _ in range(25):
            await asyncio.wait_for(producer.recv(), 10)
    after = scrape(engine)
    assert moved(before, after, "ptg_push_ack_latency_seconds_count") == 25
    buckets = [
        (float(labels[0][1]), value - before.get((name, labels), 0.0))
        for (name, labels), value in after.items()
        if name == "ptg_push_ack_latency_seconds_bucket"
    ]
    counts = [count for _, count in sorted(buckets)]
    assert counts == sorted(counts) and counts[-1] == 25  # cumulative, ending with every ack


def test_http_requests_are_counted_by_route_not_path(engine: EngineProcess, token: str, sid: str) -> None:
    before = scrape(engine)
    auth = {"Authorization": f"Bearer {token}"}
    for other in (sid, sid + "-2"):
        assert (
            httpx.post(
                f"{engine.base_url}/data/{other}", files={"entry": (other, b"x")}, headers=auth
            ).status_code
            == 200
        )
        assert httpx.get(f"{engine.base_url}/data/{other}", headers=auth).status_code == 200
    assert httpx.get(f"{engine.base_url}/data/{sid}").status_code == 401
    assert httpx.get(f"{engine.base_url}/no/such/{sid}").status_code == 404
    after = scrape(engine)
    data = "/data/{sid:path}"
    assert moved(before, after, "ptg_http_requests_total", route=data, method="POST", status="200") == 2
    assert moved(before, after, "ptg_http_requests_total", route=data, method="GET", status="200") == 2
    assert moved(before, after, "ptg_http_requests_total", route=data, method="GET", status="401") == 1
    assert moved(before, after, "ptg_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert moved(before, after, "ptg_http_request_duration_seconds_count", route=data, method="GET") == 3
    assert (
        moved(before, after, "ptg_http_request_duration_seconds_bucket", route=data, method="GET", le="10.0")
        == 3
    )
    assert not any(sid in str(labels) for _, labels in after)  # no stream id in any label


def test_metrics_need_no_token(engine: EngineProcess) -> None:
    response = httpx.get(f"{engine.base_url}/metrics")
    assert response.status_code == 200
    assert "# TYPE ptg_push_entries_total counter" in response.text


async def test_a_scrape_covers_every_worker(redis_url: str, tmp_path: Path, sid: str) -> None:
    engine = EngineProcess(
        tmp_path / "workers", redis_url, ["--log-level", "warning", "--workers", "2"]
    ).start()
    try:
        token = engine.token()
        url = f"{engine.ws_url}/data/{sid}/push?token={token}&ack=true"
        producers = [await websockets.connect(url) for _ in range(12)]
        for producer in producers:
            for _ in range(10):
                await producer.send(b"entry")
                await asyncio.wait_for(producer.recv(), 10)
            await producer.close()
        await asyncio.sleep(SHARE_SECONDS + 1)  # every worker shared its figures since
        text = httpx.get(f"{engine.base_url}/metrics").text
        entries = {
            sample.labels["pid"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "ptg_push_entries_total"
        }
        assert len(entries) == 2  # one series per worker, whichever answered
        assert sum(entries.values()) == 120
    finally:
        engine.stop()


async def test_per_stream_counts_only_when_asked_and_capped(
    engine: EngineProcess, redis_url: str, tmp_path: Path, sid: str
) -> None:
    assert "ptg_stream_entries_total" not in httpx.get(f"{engine.base_url}/metrics").text
    counted = EngineProcess(
        tmp_path / "streams", redis_url, ["--log-level", "warning", "--metrics-streams", "2"]
    )
    counted.start()
    try:
        token = counted.token()
        a, b, c = f"{sid}-a", f"{sid}-b", f"{sid}-c"
        async with websockets.connect(f"{counted.ws_url}/data/{a}/push?token={token}&ack=true") as producer:
            for payload in (b"12345", b"1234567"):
                await producer.send(payload)
                await asyncio.wait_for(producer.recv(), 10)
        # One batch over two streams: b is the second stream counted, c is past the cap.
        url = f"{counted.ws_url}/data/*/push?token={token}&ack=true&offsets=start"
        async with websockets.connect(url) as producer:
            await producer.send(json.dumps([[b, 0], [c, 3], [b, 7]]))
            await producer.send(b"bbbcccc" + b"bb")
            await asyncio.wait_for(producer.recv(), 10)
        # An upload is counted too.
        posted = httpx.post(
            f"{counted.base_url}/data/{a}",
            files={"e": (a, b"xyz")},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert posted.status_code == 200
        samples = {
            (sample.name, sample.labels["stream"]): sample.value
            for family in text_string_to_metric_families(httpx.get(f"{counted.base_url}/metrics").text)
            for sample in family.samples
            if sample.name.startswith("ptg_stream_")
        }
        assert samples == {
            ("ptg_stream_entries_total", a): 3,
            ("ptg_stream_bytes_total", a): 15,
            ("ptg_stream_entries_total", b): 2,
            ("ptg_stream_bytes_total", b): 5,
            ("ptg_stream_entries_total", "_other"): 1,
            ("ptg_stream_bytes_total", "_other"): 4,
        }
    finally:
        counted.stop()
