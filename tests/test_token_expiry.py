"""Access-token expiry (issue #8, "What must exist" 5): Kite answers 403 TokenException when the day's token dies.

The daemon stops entries, keeps its positions, logs ``token_expired`` once with the fix, sends nothing more with the
dead token (REST or WebSocket), and takes up the next token `trader login` writes — checked with one profile call —
without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_kite_ticker import FULL_PACKET, FakeKite, frame, running, take
from test_live_e2e import OPEN

from trader.adapters.kite.errors import KiteSessionExpired, TokenException, classify
from trader.adapters.kite.rest import KiteRestClient
from trader.adapters.kite.session import TokenWatcher
from trader.adapters.kite.ticker import KiteTicker
from trader.adapters.kite.venue import KiteVenue
from trader.app import App
from trader.clock import SimClock
from trader.config import load_settings
from trader.events import FeedStatus, IntentPurpose, OrderRequest, OrderStatus, OrderUpdate, Tick, VenueStatus
from trader.login import store_token
from trader.sim import ExchangeSimulator

from helpers import T0, captured_logs, sim_access_token, wait_for

pytestmark = pytest.mark.usefixtures("quiet_logs")


@contextlib.asynccontextmanager
async def kite_refusing(hits: list[str]) -> AsyncIterator[str]:
    """A Kite REST stand-in that refuses every token with 403 TokenException and records what reached it."""

    async def refuse(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path} {request.headers.get('Authorization', '')}")
        if request.headers.get("Authorization") == "token key:fresh":
            return web.json_response({"status": "success", "data": {"user_id": "AB1234"}})
        return web.json_response({"status": "error", "error_type": "TokenException",
                                  "message": "Incorrect `api_key` or `access_token`.", "data": None}, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_rest_client_sends_nothing_more_with_a_token_kite_refused(tmp_path: Path) -> None:
    hits: list[str] = []
    reported: list[tuple[str, str]] = []
    async with kite_refusing(hits) as root:
        client = KiteRestClient("key", "dead", root=root, clock=SimClock(T0))
        client.on_token_rejected = lambda token, detail: reported.append((token, detail))
        try:
            with pytest.raises(TokenException) as first:
                await client.place_order("regular", tradingsymbol="X", tag="T1", order_type="LIMIT", price=1)
            assert classify(first.value) is KiteSessionExpired
            for _ in range(3):  # orders, look-ups, margins: refused here, never sent
                with pytest.raises(TokenException, match="trader login"):
                    await client.place_order("regular", tradingsymbol="X", tag="T2", order_type="LIMIT", price=1)
                with pytest.raises(TokenException):
                    await client.orders()
            assert len(hits) == 1 and hits[0].startswith("POST /orders/regular")
            assert reported == [("dead", reported[0][1])] and "POST /orders/regular" in reported[0][1]
            # A candidate token is checked without being swapped in; the dead one stays dead until replaced.
            assert (await client.profile(access_token="fresh"))["user_id"] == "AB1234"
            assert client.access_token == "dead" and client.dead_token == "dead"
            client.access_token = "fresh"
            await client.profile()
            assert len(hits) == 3
        finally:
            await client.close()


async def test_the_watcher_reports_once_waits_for_a_valid_token_in_the_file_and_swaps_it_in(tmp_path: Path) -> None:
    hits: list[str] = []
    published: list[object] = []
    token_file = tmp_path / "kite_access_token"
    store_token(token_file, "dead")
    async with kite_refusing(hits) as root:
        client = KiteRestClient("key", "dead", root=root, clock=SimClock(T0))
        watcher = TokenWatcher(client, token_file=token_file, clock=SimClock(T0), publish=published.append,
                               poll_s=0.02)
        try:
            with captured_logs() as logs:
                for _ in range(2):
                    with pytest.raises(TokenException):
                        await client.margins()
                watcher.report_rejected("dead", "WebSocket handshake refused with HTTP 403")  # the ticker too
                store_token(token_file, "wrong")  # Kite refuses this one as well: tried once, never again
                await wait_for(lambda: sum("token key:wrong" in h for h in hits) == 1)
                await wait_for(lambda: watcher.polls >= 5)
                assert watcher.expired and sum("token key:wrong" in h for h in hits) == 1
                store_token(token_file, "fresh")
                await wait_for(lambda: not watcher.expired)
            await watcher.close()
        finally:
            await client.close()
    events = [e for e in logs if e["event"] in ("token_expired", "token_candidate_refused", "token_renewed")]
    assert [e["event"] for e in events] == ["token_expired", "token_candidate_refused", "token_renewed"]
    assert "trader login" in events[0]["fix"] and str(token_file) in events[0]["fix"]
    assert client.access_token == "fresh" and client.dead_token is None
    statuses = [e for e in published if isinstance(e, VenueStatus)]
    assert [(s.ok, s.problem) for s in statuses] == [(False, "token_expired"), (True, "token_expired")]
    assert "trader login" in statuses[0].detail
    # Sent with the dead token: the first margins call only. The fresh token was checked with one profile call.
    assert sum("token key:dead" in h for h in hits) == 1
    assert [h.split()[1] for h in hits if "token key:fresh" in h] == ["/user/profile"]


async def test_a_refused_ticker_waits_for_a_new_token_instead_of_reconnecting() -> None:
    fake = FakeKite([[frame(FULL_PACKET)]])  # refuses every token but "good" with 403
    reported: list[str] = []
    statuses: list[object] = []
    async with running(fake) as root:
        t = KiteTicker("key", "dead", [408065], clock=SimClock(T0), root=root, initial_backoff_s=0.01,
                       max_backoff_s=0.05, on_token_rejected=lambda token, _detail: reported.append(token),
                       unreachable_after_s=0.05)
        t.attach(statuses.append)
        task = asyncio.create_task(take(t, 1))
        await wait_for(lambda: t.waiting_for_token)
        # With a 10 ms backoff the old client would have tried dozens of times by now; this one waits.
        with pytest.raises(TimeoutError):
            await wait_for(lambda: len(fake.queries) > 1, within_s=0.3)
        t.set_access_token("good")
        ticks = await asyncio.wait_for(task, timeout=10)
    assert len(ticks) == 1 and reported == ["dead"]
    assert len(fake.queries) == 2 and "access_token=good" in fake.queries[1]
    assert (t.reconnects, t.token_waits) == (0, 1)
    # A refusal is an answer: the broker was never reported unreachable.
    assert not [s for s in statuses if isinstance(s, VenueStatus)]
    assert [s.status for s in statuses if isinstance(s, FeedStatus)] == ["reconnecting", "connected"]


def approved_after(events: list[object], mark: int) -> list[OrderRequest]:
    return [e for e in events[mark:] if type(e) is OrderRequest]


async def test_live_daemon_stops_entries_on_expiry_and_resumes_by_itself_with_the_new_token(tmp_path: Path) -> None:
    # The simulator counts order requests per calendar second on its wall clock, which therefore runs (speed > 0).
    sim = ExchangeSimulator(start_ns=OPEN, speed=120.0)
    base = await sim.start()
    try:
        token = await sim_access_token(base)
        settings = load_settings({
            "mode": "live", "live_confirm": "yes", "auto_execution": True, "data_dir": str(tmp_path),
            "kite": {"api_key": "sim_api_key", "access_token": token},  # as TRADER_KITE__ACCESS_TOKEN
            "kite_api_root": base, "kite_ws_root": sim.ws_url, "kite_timeout_seconds": 2.0,
            "kite_token_poll_seconds": 0.1,
            "strategy": {"bar_seconds": 10, "confidence_cutoff": 0, "first_entry_time": "09:15:00"},
            "risk": {"no_entry_before": "09:15:00", "max_daily_loss_pct": 0.5},
        })
        app = App(settings)
        events: list[object] = []
        app.bus.tap(lambda e: events.append(e) if type(e) in (OrderRequest, OrderUpdate, VenueStatus, FeedStatus,
                                                               ) else None)
        ticks: list[int] = [0]

        def count_tick(event: object) -> None:
            if type(event) is Tick:
                ticks[0] += 1

        app.bus.tap(count_tick)
        logs: list[dict[str, Any]]
        with captured_logs() as logs:
            run = asyncio.create_task(app.run(install_signal_handlers=False))
            try:
                async with asyncio.timeout(180):
                    await wait_for(lambda: any(type(e) is OrderRequest for e in events), within_s=60)
                    # The token dies while the WebSocket stays up: ticks keep coming, and the next REST call (here the
                    # risk gate's margin check for an entry) finds out.
                    await sim.expire_tokens(drop_websockets=False)
                    first = next(e for e in events if type(e) is OrderRequest).intent

                    def entry(intent_id: str) -> None:
                        app.bus.publish(dataclasses.replace(first, ts_ns=app.clock.now_ns(), intent_id=intent_id,
                                                            strategy_id="test", purpose=IntentPurpose.ENTRY))

                    def ended(intent_id: str) -> bool:
                        return any(type(e) is OrderUpdate and e.intent_id == intent_id and e.status.is_terminal
                                   for e in events)

                    entry("TESTENTRY1")
                    await wait_for(lambda: any(type(e) is VenueStatus for e in events), within_s=30)
                    await wait_for(lambda: ended("TESTENTRY1"), within_s=30)
                    # From now on entries are refused by the risk gate, naming the problem and the fix. (Exits pass
                    # the gate, and are refused by the client without being sent: Kite would refuse them anyway.)
                    entry("TESTENTRY2")
                    await wait_for(lambda: ended("TESTENTRY2"), within_s=30)
                    # Now the connection drops: one handshake is refused, then the ticker waits (no reconnects).
                    ticker = app.feeds[0].market
                    assert isinstance(ticker, KiteTicker)
                    reconnects = ticker.reconnects
                    await sim.drop_websockets()
                    await wait_for(lambda: ticker.waiting_for_token, within_s=30)
                    assert isinstance(app.venue, KiteVenue)
                    watcher = app.venue.token_watcher
                    assert watcher is not None and watcher.expired
                    polls = watcher.polls
                    await wait_for(lambda: watcher.polls >= polls + 20, within_s=30)  # ≥ 2 s of waiting
                    assert sim.ws_token_refusals == 1 and ticker.reconnects == reconnects + 1  # the drop itself
                    # `trader login` writes a new token: the daemon checks it, swaps it in and trades again.
                    store_token(settings.kite_token_file, await sim_access_token(base))
                    renewed_at = len(events)
                    await wait_for(lambda: any(type(e) is VenueStatus and e.ok for e in events[renewed_at:]),
                                   within_s=30)
                    await wait_for(lambda: any(type(e) is FeedStatus and e.status == "connected"
                                               for e in events[renewed_at:]), within_s=30)
                    ticks_before = ticks[0]
                    await wait_for(lambda: ticks[0] > ticks_before, within_s=30)
                    await wait_for(lambda: any(r.tag in {o.tag for o in sim.orders.values()}
                                               for r in approved_after(events, renewed_at)), within_s=60)
            finally:
                app.request_stop("test over")
                await asyncio.wait_for(run, timeout=30)
    finally:
        await sim.stop()
    names = [line["event"] for line in logs]
    assert names.count("token_expired") == 1 and names.count("token_renewed") == 1
    expired_line = next(line for line in logs if line["event"] == "token_expired")
    assert "trader login" in expired_line["fix"] and str(settings.kite_token_file) in expired_line["fix"]
    # Only the request that discovered the dead token (and at most one other already in flight with it) reached
    # Kite: every later one, orders included, was refused in the client without being sent.
    assert 1 <= sum(sim.token_refusals.values()) <= 2, sim.token_refusals
    assert sum(n for key, n in sim.token_refusals.items() if key.startswith("POST /orders")) <= 1
    statuses = [(e.ok, e.problem) for e in events if type(e) is VenueStatus]
    assert statuses == [(False, "token_expired"), (True, "token_expired")]
    for intent_id in ("TESTENTRY1", "TESTENTRY2"):  # neither reached the broker
        [end] = [e for e in events if type(e) is OrderUpdate and e.intent_id == intent_id]
        assert end.status is OrderStatus.REJECTED and not end.order_id
    assert "token_expired" in end.reason and "trader login" in end.reason  # refused by the gate, and why
    assert "TESTENTRY1" not in {o.tag for o in sim.orders.values()}
