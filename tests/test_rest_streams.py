"""End to end through a real engine and Redis: /ping, /streams, /openapi.json, /docs."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx
import pytest
import redis


def test_ping_is_true_without_a_token(anon: httpx.Client) -> None:
    response = anon.get("/ping")
    assert response.status_code == 200
    assert response.json() is True


def test_put_merges_metadata_and_override_replaces(http: httpx.Client, sid: str) -> None:
    assert http.put(f"/streams/{sid}", json={"max_len": 5, "kind": "rgb"}).json() == {
        "max_len": 5,
        "kind": "rgb",
    }
    assert http.put(f"/streams/{sid}", json={"kind": "depth", "fps": 30}).json() == {
        "max_len": 5,
        "kind": "depth",
        "fps": 30,
    }
    assert http.put(f"/streams/{sid}?override=true", json={"fps": 15}).json() == {"fps": 15}
    assert http.get(f"/streams/{sid}").json()["meta"] == {"fps": 15}


def test_put_refuses_a_body_that_is_not_a_json_object(http: httpx.Client, sid: str) -> None:
    for body in (b"[1, 2]", b"{not json", b"42"):
        response = http.put(f"/streams/{sid}", content=body)
        assert response.status_code == 400
        assert "JSON object" in response.json()["detail"]


def test_info_of_a_stream_with_entries(http: httpx.Client, store: redis.Redis, sid: str) -> None:
    first = store.xadd(sid, {"d": b"one"}).decode()
    last = store.xadd(sid, {"d": b"two"}).decode()
    http.put(f"/streams/{sid}", json={"desc": "front camera"})
    info = http.get(f"/streams/{sid}").json()
    assert info["sid"] == sid
    assert info["meta"] == {"desc": "front camera"}
    assert info["length"] == 2
    assert info["first-entry"] == first
    assert info["last-entry"] == last
    assert info["last-generated-id"] == last
    assert info["first-entry-time"].endswith("+00:00")
    assert info["first-entry-time"][:4].isdigit()
    assert info["first-entry-bytes"] == len(b"one") and info["last-entry-bytes"] == len(b"two")
    assert "error" not in info


def test_missing_stream_reports_an_error_field_or_400(http: httpx.Client, sid: str) -> None:
    response = http.get(f"/streams/{sid}")
    assert response.status_code == 200
    assert response.json()["error"]
    response = http.get(f"/streams/{sid}?report_error=true")
    assert response.status_code == 400
    assert sid in response.json()["detail"]


def test_list_is_sorted_and_has_streams_with_entries_or_metadata(
    http: httpx.Client, store: redis.Redis, sid: str
) -> None:
    store.xadd(sid + "-b", {"d": b"x"})
    http.put(f"/streams/{sid}-a", json={"k": 1})
    sids = http.get("/streams/").json()
    assert sids == sorted(sids)
    assert {sid + "-a", sid + "-b"} <= set(sids)
    infos = http.get("/streams/?info=true").json()
    by_sid = {info["sid"]: info for info in infos}
    assert by_sid[sid + "-b"]["length"] == 1
    assert by_sid[sid + "-a"]["meta"] == {"k": 1}


def test_delete_removes_several_streams_and_their_metadata(
    http: httpx.Client, store: redis.Redis, sid: str
) -> None:
    for name in (sid + "-1", sid + "-2"):
        store.xadd(name, {"d": b"x"})
        http.put(f"/streams/{name}", json={"k": 1})
    response = http.delete(f"/streams/{sid}-1+{sid}-2")
    assert response.status_code == 200
    assert response.json()["keys_removed"] == 4
    assert not store.exists(sid + "-1", sid + "-2", f"XMETA:{sid}-1", f"XMETA:{sid}-2")


def test_a_stream_id_with_unicode_and_percent_works_under_exactly_that_id(
    http: httpx.Client, store: redis.Redis
) -> None:
    sid = f"caméra:{uuid.uuid4().hex[:6]}%41"
    assert http.put("/streams/" + quote(sid, safe=""), json={"ok": True}).status_code == 200
    # decoded once: '%41' stays '%41' in the key, never 'A'
    assert store.get(f"XMETA:{sid}".encode()) == b'{"ok":true}'
    assert http.get("/streams/" + quote(sid, safe="")).json()["sid"] == sid


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("a%2Fb", "forbidden character"),
        ("a%20b", "forbidden character"),
        ("a%00b", "forbidden character"),
        ("XMETA:abc", "reserved prefix"),
        ("x" * 257, "more than 256"),
        ("caf%FF", "UTF-8"),
        ("a%2Bb", "one stream id"),
    ],
)
def test_bad_stream_ids_get_400_with_the_reason(http: httpx.Client, raw: str, reason: str) -> None:
    for method in ("GET", "PUT"):
        response = http.request(method, "/streams/" + raw, json={})
        assert response.status_code == 400, (method, raw)
        assert reason in response.json()["detail"]


def test_delete_with_a_bad_id_in_the_list_deletes_nothing(
    http: httpx.Client, store: redis.Redis, sid: str
) -> None:
    store.xadd(sid, {"d": b"x"})
    assert http.delete(f"/streams/{sid}+XMETA:x").status_code == 400
    assert store.exists(sid)


def test_openapi_describes_the_rest_endpoints(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/token", "/ping", "/streams/", "/streams/{sid}"):
        assert path in spec["paths"]


def test_docs_page_and_its_assets_are_served_locally(anon: httpx.Client) -> None:
    page = anon.get("/docs")
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.split("<body>")[1].replace("/openapi.json", "")
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        response = anon.get(asset)
        assert response.status_code == 200
        assert len(response.content) > 10_000


def test_cors_is_open_to_any_origin(anon: httpx.Client) -> None:
    response = anon.options(
        "/streams/",
        headers={"Origin": "http://dashboard.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "http://dashboard.example")


def test_unknown_path_is_a_json_404(anon: httpx.Client) -> None:
    response = anon.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
