"""FyersRestClient and the error mapping against a local aiohttp stand-in serving Fyers' documented reply shapes:
headers and paths as the official SDK sends them, validated payloads, 429 / 5xx / timeouts / malformed replies,
token expiry, and the shared rate limiter's windows."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fyers_stub import APP_ID, START_NS, TOKEN, Reply, error, fyers_stub, ok
from pydantic import SecretStr

from trader.adapters.fyers.errors import (
    FyersError,
    FyersSessionExpired,
    FyersTokenError,
    classify,
    parse_reply,
    to_broker_error,
)
from trader.adapters.fyers.rest import app_id_hash
from trader.adapters.fyers.session import auth_code_from, auth_code_url, exchange_auth_code, token_watcher
from trader.adapters.ports import BrokerUnavailable, OrderRejected, RateLimited
from trader.cli import main
from trader.clock import SimClock
from trader.config import Settings
from trader.events import VenueStatus
from trader.ids import fyers_order_tag, tag_from_fyers
from trader.venue_settings import FyersSettings

from helpers import wait_for

ORDER = {"symbol": "NSE:NIFTY26D0326000CE", "qty": 75, "type": 1, "side": 1, "productType": "INTRADAY",
         "limitPrice": 101.5, "stopPrice": 0, "validity": "DAY", "disclosedQty": 0, "offlineOrder": False,
         "orderTag": "ENT0ABCDEF100000001"}


async def test_headers_paths_and_json_bodies() -> None:
    async with fyers_stub() as (stub, client):
        stub.script("POST", "/api/v3/orders/sync", Reply(ok(code=1101, message="Order submitted", id="26120100001")))
        stub.script("GET", "/data/quotes", Reply(ok(d=[
            {"n": "NSE:NIFTY50-INDEX", "s": "ok", "v": {"lp": 26012.35, "tt": "1764561600"}},
            {"n": "NSE:BAD", "s": "error", "v": {"errmsg": "invalid symbol"}}])))
        assert await client.place_order(ORDER) == "26120100001"
        quotes = await client.quotes(["NSE:NIFTY50-INDEX", "NSE:BAD"])
        assert quotes == {"NSE:NIFTY50-INDEX": {"lp": 26012.35, "tt": "1764561600"}}
        (method, path, _q, body, headers), (_m, qpath, query, _b, _h) = stub.requests
        assert (method, path, body) == ("POST", "/api/v3/orders/sync", ORDER)
        assert headers["Authorization"] == f"{APP_ID}:{TOKEN}" and headers["version"] == "3"
        assert qpath == "/data/quotes" and query == {"symbols": "NSE:NIFTY50-INDEX,NSE:BAD"}


async def test_validate_authcode_sends_the_app_id_hash() -> None:
    async with fyers_stub() as (stub, client):
        client.access_token = None
        stub.script("POST", "/api/v3/validate-authcode", Reply(ok(access_token="NEWTOKEN", refresh_token="r")))
        assert await client.validate_authcode("AUTHCODE", "SECRET") == "NEWTOKEN"
        [body] = stub.calls("POST", "/api/v3/validate-authcode")
        expected = hashlib.sha256(f"{APP_ID}:SECRET".encode()).hexdigest()
        assert body == {"grant_type": "authorization_code", "appIdHash": expected, "code": "AUTHCODE"}
        assert app_id_hash(APP_ID, "SECRET") == expected and client.access_token == "NEWTOKEN"
        assert "Authorization" not in stub.requests[0][4]


async def test_a_write_is_sent_once_and_a_failure_is_ambiguous() -> None:
    async with fyers_stub() as (stub, client):
        stub.script("POST", "/api/v3/orders/sync", Reply(error(-1, "Internal error"), status=500),
                    Reply({"s": "ok", "code": 1101, "message": "no id here"}),
                    Reply("<html>bad gateway</html>", status=502, raw=True),
                    Reply(error(-374, "something new"), status=400))
        for _ in range(4):
            with pytest.raises(Exception) as caught:
                await client.place_order(ORDER)
            assert classify(caught.value, write=True) is BrokerUnavailable  # never an invented rejection
        assert len(stub.calls("POST", "/api/v3/orders/sync")) == 4  # one send each, no retry


async def test_documented_refusals_rate_limits_and_timeouts() -> None:
    async with fyers_stub(timeout_s=0.2, get_attempts=2) as (stub, client):
        stub.script("POST", "/api/v3/orders/sync", Reply(error(-50, "Invalid input: qty"), status=400),
                    Reply(error(-429, "request limit reached"), status=429),
                    Reply(ok(id="1"), delay_s=1.0))
        kinds = []
        for _ in range(3):
            with pytest.raises(Exception) as caught:
                await client.place_order(ORDER)
            kinds.append(type(to_broker_error(caught.value, write=True)))
        assert kinds == [OrderRejected, RateLimited, BrokerUnavailable]
        with pytest.raises(ValueError, match="order tag"):
            await client.place_order({**ORDER, "orderTag": "bad-tag!"})
        assert len(stub.calls("POST", "/api/v3/orders/sync")) == 3  # the bad tag never left


async def test_order_writes_are_rejected_only_on_client_side_validation_codes() -> None:
    """-99 (Fyers' catch-all; the SDK builds it for its own network failures too) and every code not confirmed to
    mean "no order" leave an order write as BrokerUnavailable: the execution actor looks the tag up before a re-send."""
    codes = [-50, -51, -99, -53, -201, -202, -300, -352]
    async with fyers_stub() as (stub, client):
        stub.script("POST", "/api/v3/orders/sync", *[Reply(error(code, "refused"), status=400) for code in codes])
        kinds = []
        for _ in codes:
            with pytest.raises(FyersError) as caught:
                await client.place_order(ORDER)
            kinds.append(type(to_broker_error(caught.value, write=True)))
        assert kinds == [OrderRejected, OrderRejected, *[BrokerUnavailable] * 6]
        stub.script("GET", "/api/v3/funds", Reply(error(-99, "refused"), status=400))
        with pytest.raises(FyersError) as caught:
            await client.funds()
        assert classify(caught.value) is OrderRejected  # a read: nothing is at stake
    sdk_network_failure = FyersError("network", http_status=400, code=-99)
    assert classify(sdk_network_failure, write=True) is BrokerUnavailable


async def test_a_bare_403_does_not_kill_the_token() -> None:
    """A CDN's or firewall's 403 page says nothing about the token: the request fails as unavailable, the token is
    not reported and the next request is sent with it."""
    async with fyers_stub(get_attempts=1) as (stub, client):
        refused: list[str] = []
        client.on_token_rejected = lambda token, detail: refused.append(token)
        stub.script("GET", "/api/v3/funds", Reply("<html><body>403 Forbidden</body></html>", status=403, raw=True))
        with pytest.raises(FyersError) as caught:
            await client.funds()
        assert classify(caught.value) is BrokerUnavailable
        assert refused == [] and client.dead_token is None
        stub.script("GET", "/api/v3/funds", Reply(error(-16, "Could not authenticate"), status=403))
        with pytest.raises(FyersTokenError):
            await client.funds()
        assert refused == [TOKEN] and client.dead_token == TOKEN


async def test_reads_are_retried_and_validated() -> None:
    async with fyers_stub() as (stub, client):
        stub.script("GET", "/api/v3/orders", Reply(error(-1, "busy"), status=503), Reply(ok(orderBook=[{"id": "1"}])))
        assert await client.orders() == [{"id": "1"}]
        stub.script("GET", "/api/v3/tradebook", *[Reply(ok(tradeBook={"not": "a list"}))] * 3)
        with pytest.raises(FyersError, match="tradeBook") as caught:
            await client.trades()
        assert caught.value.malformed and classify(caught.value) is BrokerUnavailable
        stub.script("GET", "/api/v3/positions", Reply(ok()))
        assert await client.positions() == []  # an empty day may leave the list out
        stub.script("GET", "/api/v3/profile", Reply(error(-50, "Invalid input"), status=400))
        with pytest.raises(FyersError):
            await client.profile()
        assert len(stub.calls("GET", "/api/v3/profile")) == 1  # a 4xx is not retried


async def test_a_refused_token_is_reported_once_and_never_sent_again() -> None:
    async with fyers_stub() as (stub, client):
        refused: list[tuple[str, str]] = []
        client.on_token_rejected = lambda token, detail: refused.append((token, detail))
        stub.script("GET", "/api/v3/funds", Reply(error(-8, "Your token has expired"), status=401))
        with pytest.raises(FyersTokenError) as caught:
            await client.funds()
        assert classify(caught.value) is FyersSessionExpired and issubclass(FyersSessionExpired, OrderRejected)
        assert [token for token, _ in refused] == [TOKEN] and client.dead_token == TOKEN
        with pytest.raises(FyersTokenError, match="not sent"):
            await client.place_order(ORDER)
        assert len(stub.requests) == 1
        stub.script("GET", "/api/v3/profile", Reply(ok(data={"fy_id": "XB12345", "name": "A"})))
        assert (await client.profile(access_token="CANDIDATE"))["fy_id"] == "XB12345"
        assert stub.requests[-1][4]["Authorization"] == f"{APP_ID}:CANDIDATE"


def test_envelope_parsing() -> None:
    assert parse_reply(200, b'{"s":"ok","code":200,"message":"","id":"5"}')["id"] == "5"
    with pytest.raises(FyersTokenError):
        parse_reply(200, b'{"s":"error","code":-17,"message":"token invalid or expired"}')
    with pytest.raises(FyersTokenError):
        parse_reply(401, b"unauthorized")
    with pytest.raises(FyersTokenError):
        parse_reply(403, b'{"s":"error","code":-16,"message":"Could not authenticate"}')
    for body in (b"forbidden", b"<html><body>Access Denied</body></html>", b'{"error": "blocked by WAF"}'):
        with pytest.raises(FyersError) as caught:
            parse_reply(403, body)
        assert not isinstance(caught.value, FyersTokenError), body
        assert classify(caught.value) is BrokerUnavailable and classify(caught.value, write=True) is BrokerUnavailable
    with pytest.raises(FyersError) as caught:
        parse_reply(200, b'{"s":"maybe"}')
    assert caught.value.malformed
    with pytest.raises(FyersError) as caught:
        parse_reply(200, b"[1, 2]")
    assert caught.value.malformed


async def test_the_shared_limiter_keeps_the_per_second_window() -> None:
    async with fyers_stub(rate_limits=((2, 1.0),)) as (stub, client):
        stub.default("GET", "/api/v3/funds", Reply(ok(fund_limit=[])))
        for _ in range(5):
            await client.funds()
        limiter = client._limiters[0]
        assert limiter.waits >= 2  # five requests at two per second had to wait on the (simulated) clock


def test_order_tags_fit_fyers_unchanged() -> None:
    assert fyers_order_tag("ENT0ABCDEF100000001") == "ENT0ABCDEF100000001"
    with pytest.raises(ValueError):
        fyers_order_tag("has space")
    assert tag_from_fyers("1:Untagged") == "" and tag_from_fyers("2:ENT01") == "ENT01"
    assert tag_from_fyers("ENT01") == "ENT01" and tag_from_fyers(None) == ""


# --- login and the token watch -----------------------------------------------------------------------------------


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, fyers=FyersSettings(app_id=APP_ID, secret_key=SecretStr("SECRET"),
                                                           redirect_uri="https://127.0.0.1/cb"))


def test_auth_code_from_code_or_redirect_url(tmp_path: Path) -> None:
    assert auth_code_from(" eyJ0e.abc-_1 ") == "eyJ0e.abc-_1"
    assert auth_code_from("https://127.0.0.1/cb?s=ok&code=200&auth_code=eyJ.x.y&state=trader") == "eyJ.x.y"
    with pytest.raises(ValueError, match="not an auth code"):
        auth_code_from("https://127.0.0.1/cb?s=error&message=cancelled")
    url = auth_code_url(_settings(tmp_path))
    assert url.startswith("https://api-t1.fyers.in/api/v3/generate-authcode?client_id=XB12345-100&redirect_uri=")
    assert "response_type=code" in url


async def test_login_stores_the_token_owner_only(tmp_path: Path) -> None:
    async with fyers_stub() as (stub, client):
        stub.script("POST", "/api/v3/validate-authcode", Reply(ok(access_token="DAYTOKEN")))
        path = await exchange_auth_code(_settings(tmp_path), "https://x/cb?auth_code=AC1&state=s", client=client)
        assert path.read_text().strip() == "DAYTOKEN" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stub.calls("POST", "/api/v3/validate-authcode")[0]["code"] == "AC1"


async def test_the_token_watch_takes_up_a_new_token(tmp_path: Path) -> None:
    async with fyers_stub() as (stub, client):
        published: list[object] = []
        token_file = tmp_path / "fyers_access_token"
        watcher = token_watcher(client, token_file=token_file, clock=SimClock(START_NS),
                                publish=published.append, poll_s=0.01)
        stub.script("GET", "/api/v3/funds", Reply(error(-17, "token invalid or expired"), status=401))
        with pytest.raises(FyersTokenError):
            await client.funds()
        assert watcher.expired and isinstance(published[0], VenueStatus) and not published[0].ok
        assert "trader login --venue fyers" in published[0].detail
        stub.script("GET", "/api/v3/profile", Reply(error(-8, "expired"), status=401))
        token_file.write_text("STILLDEAD\n")
        await wait_for(lambda: watcher.polls >= 2 and not stub.replies[("GET", "/api/v3/profile")])
        stub.default("GET", "/api/v3/profile", Reply(ok(data={"fy_id": "XB12345"})))
        token_file.write_text("FRESH\n")
        await wait_for(lambda: not watcher.expired)
        assert client.access_token == "FRESH" and client.dead_token is None and watcher.renewals == 1
        await watcher.close()


def test_trader_login_with_the_fyers_venue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`TRADER_VENUE=fyers trader login --request-token <redirect URL>` against a stand-in /validate-authcode (the
    server runs on its own loop in a thread: the CLI runs its own)."""
    seen: list[dict[str, str]] = []

    async def validate(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response(ok(access_token="CLITOKEN"))

    ready = threading.Event()
    state: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/api/v3/validate-authcode", validate)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state["port"] = runner.addresses[0][1]
        state["loop"] = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        for key, value in {"TRADER_VENUE": "fyers", "TRADER_FYERS__APP_ID": APP_ID,
                           "TRADER_FYERS__SECRET_KEY": "SECRET", "TRADER_DATA_DIR": str(tmp_path),
                           "TRADER_FYERS__API_ROOT": f"http://127.0.0.1:{state['port']}/api/v3"}.items():
            monkeypatch.setenv(key, value)
        assert main(["login", "--request-token", "https://127.0.0.1/cb?s=ok&auth_code=AC9&state=trader"]) == 0
    finally:
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(10)
    assert seen[0]["code"] == "AC9" and seen[0]["appIdHash"] == app_id_hash(APP_ID, "SECRET")
    assert (tmp_path / "fyers_access_token").read_text().strip() == "CLITOKEN"
    assert "generate-authcode?client_id=XB12345-100" in capsys.readouterr().out
