"""Several --redis-url seeds of one Redis Cluster: split only where a URL starts,
the first that answers is used, and a Redis that is not a cluster is refused
when seeds (or --redis-cluster) say it must be one."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from engine._core import Shards
from engine.launcher import EngineProcess, free_port
from engine.process import die_with_parent
from engine.redis.cluster import ClusterMap
from engine.redis.connect import first_answering
from engine.redis.link import SEED_SEPARATOR, describe, seed_urls
from engine.redis.local_cluster import LocalCluster
from engine.redis.servers import find_server_binary
from tests.pushclient import push, push_url

# -- splitting -----------------------------------------------------------------


def test_one_url_is_one_seed() -> None:
    assert seed_urls("redis://h:6379/0") == ["redis://h:6379/0"]
    assert seed_urls("unix:///run/redis.sock?db=2") == ["unix:///run/redis.sock?db=2"]


def test_seeds_are_split_where_a_scheme_follows_a_comma() -> None:
    assert seed_urls("redis://a:1,rediss://b:2,unix:///s.sock") == [
        "redis://a:1",
        "rediss://b:2",
        "unix:///s.sock",
    ]
    assert seed_urls(" redis://a:1 , redis://b:2 ") == ["redis://a:1", "redis://b:2"]


def test_a_comma_inside_a_urls_options_is_not_a_separator() -> None:
    value = "rediss://a:1/0?ssl_ca_certs=/etc/x,y.pem,redis://b:2/0?client_name=p,q"
    assert seed_urls(value) == ["rediss://a:1/0?ssl_ca_certs=/etc/x,y.pem", "redis://b:2/0?client_name=p,q"]
    # Other schemes, or capitals, do not start a URL here (redis-py reads neither).
    assert seed_urls("redis://a/0?name=x,http://b,REDIS://c") == ["redis://a/0?name=x,http://b,REDIS://c"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the Redis URL is empty"),
        ("   ", "the Redis URL is empty"),
        (",redis://a", "Redis URL 1 of 2 is empty"),
        ("redis://a, ,redis://b", "Redis URL 1 of 2 ends with a comma"),
        ("redis://a,,redis://b", "Redis URL 1 of 2 ends with a comma"),
        ("redis://a,", "the Redis URL ends with a comma"),
        ("redis://a,redis://b,", "Redis URL 2 of 2 ends with a comma"),
    ],
)
def test_an_empty_seed_is_a_clear_error(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seed_urls(value)


def test_the_error_does_not_repeat_the_value() -> None:
    with pytest.raises(ValueError) as error:
        seed_urls("redis://user:hunter2@a,,redis://b")
    assert "hunter2" not in str(error.value)


hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)
secrets = st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True)
# Option values with commas, spaces and slashes, but never a scheme after a comma.
option_values = st.from_regex(r"[a-z0-9,/ ._-]{0,20}", fullmatch=True).filter(
    lambda text: SEED_SEPARATOR.search("," + text) is None and not text.endswith((",", " "))
)


@st.composite
def seed_url(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["redis", "rediss"]))
    password = draw(st.none() | secrets)
    credentials = f"user:{password}@" if password else ""
    url = f"{scheme}://{credentials}{draw(hosts)}:{draw(st.integers(1, 65535))}/0"
    value = draw(st.none() | option_values)
    return url if value is None else f"{url}?client_name={value}"


@given(st.lists(seed_url(), min_size=1, max_size=6), st.sampled_from([",", ", ", ",\t"]))
def test_joined_seeds_split_back_into_the_same_urls(urls: list[str], separator: str) -> None:
    assert seed_urls(separator.join(urls)) == urls


@given(st.lists(seed_url(), min_size=1, max_size=6))
def test_describe_hides_every_seeds_password(urls: list[str]) -> None:
    described = describe(",".join(urls))
    assert described.count("://") == len(urls)
    for url in urls:
        if "@" in url:
            password = url.split("://")[1].split("@")[0].split(":")[1]
            assert f":{password}@" not in described


# Pieces that make separators, near-separators and empty items likely.
pieces = st.sampled_from([",", ":", " ", "/", "@", "?", "=", "\t", "redis://", "rediss://", "unix://", "a"])


@given(st.lists(pieces, max_size=30).map("".join) | st.text())
def test_any_text_is_split_or_refused_with_a_value_error(value: str) -> None:
    try:
        urls = seed_urls(value)
    except ValueError:
        return
    assert urls
    for url in urls:
        assert url == url.strip() and url and not url.endswith(",")
        assert SEED_SEPARATOR.search(url) is None
    describe(value)  # never raises


def test_a_long_hostile_value_is_split_quickly() -> None:
    hostile = ", " * 50_000 + "redis://a" + ",redis:/" * 50_000
    started = time.perf_counter()
    with pytest.raises(ValueError):
        seed_urls(hostile)
    describe(hostile)
    assert time.perf_counter() - started < 1.0


# -- real servers --------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server on TCP with cluster support off, as most are."""
    port = free_port()
    directory = tmp_path_factory.mktemp("plain-redis")
    command = [
        find_server_binary(None),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url, socket_timeout=1)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    client.close()
    yield url
    process.terminate()
    process.wait(10)


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}"


async def test_the_first_seed_that_answers_is_used(plain_redis: str) -> None:
    dead = closed_port_url()
    assert await first_answering([dead, plain_redis]) == plain_redis
    assert await first_answering([plain_redis, dead]) == plain_redis
    with pytest.raises(ConnectionError, match="no seed of the Redis Cluster is reachable") as error:
        await first_answering([dead, closed_port_url()])
    assert str(error.value).count("127.0.0.1:") >= 2
    with pytest.raises(ConnectionError, match=f"Redis at {dead} is not reachable"):
        await first_answering([dead])


async def test_the_cluster_map_keeps_every_seed_the_one_that_answered_first(
    redis_cluster: LocalCluster,
) -> None:
    dead = closed_port_url()
    cluster = ClusterMap(redis_cluster.url, Shards(), [dead, redis_cluster.url])
    assert cluster.seed_url == redis_cluster.url
    assert [seed.url for seed in cluster.seeds] == [redis_cluster.url, dead]
    await cluster.load()
    assert len(cluster.addresses) == redis_cluster.masters


async def test_an_engine_whose_first_seed_is_down_serves_from_the_next(
    redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    seeds = f"{closed_port_url()},{redis_cluster.url}"
    engine = EngineProcess(tmp_path, seeds, ["--redis-cluster"]).start()
    try:
        token = engine.token()
        sid = f"seeds-{uuid.uuid4().hex[:8]}"
        payload = bytes(range(256)) * 3
        result = await push(push_url(engine.ws_url, sid, token, ack=True), [payload], expect_acks=1)
        async with httpx.AsyncClient(base_url=engine.base_url) as http:
            response = await http.get(
                f"/data/{sid}",
                params={"last_entry_id": "0"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.text
        assert response.content == payload
        assert json.loads(response.headers["entry-offset"])[0][:2] == [sid, result.acks[0]]
        assert f"is a cluster of {redis_cluster.masters} masters" in engine.log()
    finally:
        code = engine.stop()
    assert code == 0, engine.log()


def refused(engine: EngineProcess) -> str:
    """The log of an engine that must not start, once it has exited non-zero."""
    engine.start(wait=False)
    assert engine.process is not None
    try:
        code = engine.process.wait(30)
    finally:
        engine.stop()  # if it hangs instead
    log = engine.log()
    assert code != 0, log
    assert "Traceback" not in log
    return log


def test_several_urls_to_a_redis_that_is_not_a_cluster_are_refused(plain_redis: str, tmp_path: Path) -> None:
    log = refused(EngineProcess(tmp_path, f"{plain_redis},{closed_port_url()}"))
    assert (
        f"several Redis URLs name the seeds of one Redis Cluster; {plain_redis} is not a cluster node" in log
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_redis_cluster_refuses_a_redis_that_is_not_one(
    plain_redis: str, tmp_path: Path, workers: int
) -> None:
    engine = EngineProcess(tmp_path, plain_redis, ["--redis-cluster", "--workers", str(workers)])
    assert f"cannot start: --redis-cluster: {plain_redis} is not a cluster node" in refused(engine)
