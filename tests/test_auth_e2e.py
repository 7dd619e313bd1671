"""Every auth failure, on HTTP and on the WebSocket handshake, through a real engine."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import EngineProcess
from tests.wsraw import handshake, read_close_frame

FORGED = jwt.encode(
    {"sub": "test", "exp": int(time.time()) + 600}, "not-the-secret-but-long-enough-for-hs256", "HS256"
)
NONE_ALG = jwt.encode({"sub": "test", "exp": int(time.time()) + 600}, None, "none")

BAD_TOKENS = {
    "malformed": "not.a.jwt",
    "forged": FORGED,
    "alg-none": NONE_ALG,
    "garbage": "x" * 40,
}

PROTECTED = [
    ("GET", "/streams/"),
    ("GET", "/streams/abc"),
    ("PUT", "/streams/abc"),
    ("DELETE", "/streams/abc"),
]


def expired_token(engine: EngineProcess) -> str:
    secret = (engine.data_dir / "secret").read_text().strip()
    return jwt.encode({"sub": "test", "exp": int(time.time()) - 5}, secret, "HS256")


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_missing_token_is_401_with_www_authenticate(anon: httpx.Client, method: str, path: str) -> None:
    response = anon.request(method, path, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "no token" in response.json()["detail"]


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
@pytest.mark.parametrize("carrier", ["query", "header", "cookie"])
def test_bad_tokens_are_401_in_every_carrier(anon: httpx.Client, kind: str, carrier: str) -> None:
    token = BAD_TOKENS[kind]
    response = anon.get("/streams/", **_carry(carrier, token))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_401(anon: httpx.Client, engine: EngineProcess) -> None:
    response = anon.get("/streams/", params={"token": expired_token(engine)})
    assert response.status_code == 401
    assert response.json()["detail"] == "token expired"


@pytest.mark.parametrize("carrier", ["query", "header", "cookie"])
def test_a_valid_token_works_in_every_carrier(anon: httpx.Client, token: str, carrier: str) -> None:
    assert anon.get("/streams/", **_carry(carrier, token)).status_code == 200


def test_header_scheme_must_be_bearer(anon: httpx.Client, token: str) -> None:
    response = anon.get("/streams/", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401


def test_token_endpoint_sets_cookie_and_caps_lifetime(engine: EngineProcess) -> None:
    with httpx.Client(base_url=engine.base_url) as client:
        response = client.post("/token?exp=60", data={"username": "ana", "password": "ana"})
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["exp"] - time.time() == pytest.approx(60, abs=5)
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "authorization=" in cookie
        # the cookie alone authenticates the next request
        assert client.get("/streams/").status_code == 200
        far = client.post("/token?exp=999999999", data={"username": "ana", "password": "ana"})
        assert far.json()["exp"] - time.time() <= 7 * 24 * 3600 + 5


@pytest.mark.parametrize(
    "form", [{"username": "ana", "password": "bob"}, {"username": "", "password": ""}, {"username": "ana"}]
)
def test_token_endpoint_refuses_wrong_credentials(anon: httpx.Client, form: dict[str, str]) -> None:
    response = anon.post("/token", data=form)
    assert response.status_code == 401
    assert response.json()["detail"]


# WebSocket handshake ------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["push", "pull"])
@pytest.mark.parametrize("kind", ["missing", *sorted(BAD_TOKENS)])
def test_websocket_upgrade_without_a_valid_token_is_401(
    engine: EngineProcess, endpoint: str, kind: str
) -> None:
    query = "" if kind == "missing" else f"?token={BAD_TOKENS[kind]}"
    status, headers, _, sock = handshake(engine.port, f"/data/cam/{endpoint}{query}")
    sock.close()
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"


async def test_websockets_client_sees_401_for_an_expired_token(engine: EngineProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{engine.ws_url}/data/cam/push?token={expired_token(engine)}"):
            pass
    assert refused.value.response.status_code == 401


def test_websocket_token_from_header_and_cookie(engine: EngineProcess, token: str) -> None:
    for headers in ({"Authorization": f"Bearer {token}"}, {"Cookie": f'authorization="Bearer {token}"'}):
        status, _, _, sock = handshake(engine.port, "/data/cam/pull", headers)
        sock.close()
        assert status == 101


@pytest.mark.parametrize("target", ["/data/cam", "/data/cam/other", "/streams/cam", "/", "/ws"])
def test_websocket_upgrade_to_another_path_is_404(engine: EngineProcess, token: str, target: str) -> None:
    status, _, _, sock = handshake(engine.port, f"{target}?token={token}")
    sock.close()
    assert status == 404


def test_browser_style_connection_header_is_accepted(engine: EngineProcess, token: str) -> None:
    status, _, _, sock = handshake(
        engine.port, f"/data/cam/pull?token={token}", connection="keep-alive, Upgrade"
    )
    sock.close()
    assert status == 101


@pytest.mark.parametrize(
    ("segment", "reason"),
    [
        ("XMETA:cam", "reserved prefix"),
        ("a%2Fb", "forbidden character"),
        ("a%20b", "forbidden"),
        ("%FF", "bad stream id"),
    ],
)
def test_bad_stream_id_on_websocket_closes_1008(
    engine: EngineProcess, token: str, segment: str, reason: str
) -> None:
    status, _, rest, sock = handshake(engine.port, f"/data/{segment}/push?token={token}")
    with sock:
        assert status == 101
        code, text = read_close_frame(sock, rest)
    assert code == 1008
    assert reason in text


def _carry(carrier: str, token: str) -> dict[str, dict[str, str]]:
    if carrier == "query":
        return {"params": {"token": token}}
    if carrier == "header":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    return {"headers": {"Cookie": f'authorization="Bearer {token}"'}}
