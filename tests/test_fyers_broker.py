"""FyersBroker (the Broker port) against the local Fyers stand-in: the order body, errors as the port's kinds, tag
look-up, resync after missed messages, forged and duplicated socket updates, the book, positions and funds."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fyers_stub import Reply, error, fyers_stub, ok
from pydantic import SecretStr
from test_fyers_orders import START_NS, TAG, intent, row
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from trader.actors.execution import ExecutionActor, RetryPolicy
from trader.adapters.fyers.broker import FyersBroker, fyers_symbol
from trader.adapters.fyers.order_socket import SUBSCRIBE, FyersOrderSocket
from trader.adapters.fyers.venue import FyersVenue
from trader.adapters.order_tracker import OrderTracker
from trader.adapters.ports import Broker, BrokerUnavailable, OrderRejected, Venue
from trader.bus import EventBus
from trader.clock import NS_PER_SECOND, SimClock
from trader.config import Settings
from trader.events import Fill, IntentPurpose, OrderRequest, OrderStatus, OrderType, OrderUpdate, Side
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import underlying_spec
from trader.venue_settings import FyersSettings

from helpers import captured_logs, wait_for

ORDER_ID = "26120100001"


def request(order_type: OrderType = OrderType.LIMIT) -> OrderRequest:
    limit = 10_150 if order_type in (OrderType.LIMIT, OrderType.SL) else 0
    trigger = 10_000 if order_type in (OrderType.SL, OrderType.SL_M) else 0
    changed = dataclasses.replace(intent(), order_type=order_type, limit_price=limit, trigger_price=trigger)
    return OrderRequest(ts_ns=START_NS, intent=changed, tag=TAG)


def make(client: Any) -> tuple[FyersBroker, list[object]]:
    broker = FyersBroker(client, tracker=OrderTracker(SimClock(START_NS)))
    port: Broker = broker  # mypy checks FyersBroker against the port
    assert port.wants_ticks is False
    broker.confirm_pause_s = 0.01
    events: list[object] = []
    broker.attach(events.append)
    return broker, events


async def test_the_order_body_and_its_reply() -> None:
    async with fyers_stub() as (stub, client):
        broker, _ = make(client)
        stub.script("POST", "/api/v3/orders/sync", Reply(ok(code=1101, id=ORDER_ID)), Reply(ok(code=1101, id="2")))
        assert await broker.place_order(request()) == ORDER_ID
        await broker.place_order(request(OrderType.SL_M))
        limit, stop = stub.calls("POST", "/api/v3/orders/sync")
        assert limit == {"symbol": "NSE:NIFTY26D0326000CE", "qty": 150, "type": 1, "side": 1,
                         "productType": "INTRADAY", "limitPrice": 101.5, "stopPrice": 0, "validity": "DAY",
                         "disclosedQty": 0, "offlineOrder": False, "orderTag": TAG}
        assert (stop["type"], stop["limitPrice"], stop["stopPrice"]) == (3, 0, 100.0)  # SL-M sent as it is
        assert fyers_symbol("BFO", "SENSEX26D0385000CE") == "BSE:SENSEX26D0385000CE"


async def test_errors_leave_as_the_ports_kinds() -> None:
    async with fyers_stub() as (stub, client):
        broker, _ = make(client)
        stub.script("POST", "/api/v3/orders/sync", Reply(error(-50, "Invalid input: qty"), status=400),
                    Reply(error(-99, "RED:Margin Shortfall"), status=400), Reply(error(-1, "gateway"), status=504))
        with pytest.raises(OrderRejected):  # client-side validation: certainly no order
            await broker.place_order(request())
        with pytest.raises(BrokerUnavailable):  # -99, Fyers' catch-all: the order may exist, look its tag up
            await broker.place_order(request())
        with pytest.raises(BrokerUnavailable):
            await broker.place_order(request())
        stub.script("DELETE", "/api/v3/orders/sync", Reply(ok(code=1103, message="Successfully cancelled")))
        with pytest.raises(BrokerUnavailable):  # a cancel reply without the order id: may or may not be done
            await broker.cancel_order(ORDER_ID)
        assert stub.calls("DELETE", "/api/v3/orders/sync") == [{"id": ORDER_ID}]


async def test_find_order_by_tag_takes_the_newest() -> None:
    async with fyers_stub() as (stub, client):
        broker, _ = make(client)
        stub.script("GET", "/api/v3/orders", Reply(ok(orderBook=[
            row(5, id="1", orderDateTime="01-Dec-2026 09:15:02"),
            row(6, 75, 101.5, id="2", orderDateTime="01-Dec-2026 10:01:00"),
            row(2, 150, 99.0, id="3", orderTag="1:Untagged")])))
        found = await broker.find_order_by_tag(TAG)
        assert found is not None and found.order_id == "2" and found.status is OrderStatus.OPEN
        assert (found.filled_quantity, found.average_price, found.side) == (75, 10_150, Side.BUY)
        assert found.instrument_token == 101126120339395 and found.tradingsymbol == "NIFTY26D0326000CE"
        stub.script("GET", "/api/v3/orders", Reply(ok(orderBook=[])))
        assert await broker.find_order_by_tag(TAG) is None


async def test_socket_updates_duplicates_and_resync_book_each_fill_once() -> None:
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        stub.script("POST", "/api/v3/orders/sync", Reply(ok(id=ORDER_ID)))
        await broker.place_order(request())
        part = {"id": ORDER_ID, "qty": 150, "qty_filled": 75, "price_traded": 101.5, "org_ord_status": 6,
                "ord_type": 1, "tran_side": 1, "ordertag": TAG, "symbol": "NSE:NIFTY26D0326000CE"}
        broker.on_order_message({"s": "ok", "orders": part})
        broker.on_order_message({"s": "ok", "orders": part})  # duplicated delivery
        broker.on_order_message({"s": "ok", "orders": "garbage"})  # malformed: dropped
        broker.on_order_message({"s": "ok", "orders": {**part, "qty_filled": "lots"}})
        assert broker.dropped == 2
        # the socket drops; the rest of the order filled meanwhile: resync books only what is new, once
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(2, 150, 101.75)])))
        await broker.resync()
        await broker.resync()
        fills = [e for e in events if isinstance(e, Fill)]
        assert [(f.quantity, f.price) for f in fills] == [(75, 10_150), (75, 10_200)]
        final = [e for e in events if isinstance(e, OrderUpdate)][-1]
        assert final.status is OrderStatus.COMPLETE and final.filled_quantity == 150


async def test_a_forged_update_is_never_booked() -> None:
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        assert broker.tracker is not None
        broker.tracker.expect(request().intent, TAG)  # placed, its reply lost
        forged = {"id": "666", "qty": 150, "qty_filled": 150, "price_traded": 1.0, "org_ord_status": 2,
                  "ord_type": 1, "tran_side": 1, "ordertag": TAG, "symbol": "NSE:NIFTY26D0326000CE"}
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(6, id="666", orderTag="1:Untagged")])))
        broker.on_order_message({"s": "ok", "orders": forged})
        await wait_for(lambda: broker.pending_confirmations == 0)
        assert events == [] and broker.unconfirmed == 1
        # a genuine one: the order book confirms id, tag, symbol and side, and its record is what is booked
        genuine = {**forged, "id": "777", "price_traded": 101.5}
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(2, 150, 101.5, id="777")])))
        broker.on_order_message({"s": "ok", "orders": genuine})
        await wait_for(lambda: broker.pending_confirmations == 0)
        assert [(e.quantity, e.price) for e in events if isinstance(e, Fill)] == [(150, 10_150)]
        await broker.close()


async def test_a_book_row_under_our_tag_for_another_contract_does_not_confirm() -> None:
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        broker.confirm_rounds = 2
        assert broker.tracker is not None
        broker.tracker.expect(request().intent, TAG)
        claim = {"id": "888", "qty": 150, "qty_filled": 150, "price_traded": 101.5, "org_ord_status": 2,
                 "ord_type": 1, "tran_side": 1, "ordertag": TAG, "symbol": "NSE:NIFTY26D0326000CE"}
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[
            row(2, 150, 101.5, id="888", symbol="NSE:NIFTY26D0326000PE", side=-1)])))
        broker.on_order_message({"s": "ok", "orders": claim})
        broker.on_order_message({"s": "ok", "orders": claim})  # held with the first, dropped with it
        await wait_for(lambda: broker.pending_confirmations == 0)
        assert events == [] and broker.unconfirmed == 2
        # the broker could not be asked at all: nothing is booked either
        stub.default("GET", "/api/v3/orders", Reply(error(-1, "down"), status=503))
        broker.on_order_message({"s": "ok", "orders": {**claim, "id": "889"}})
        await wait_for(lambda: broker.pending_confirmations == 0)
        assert events == [] and broker.unconfirmed == 3


async def test_book_positions_funds_and_margin() -> None:
    async with fyers_stub() as (stub, client):
        broker, _ = make(client)
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(2, 150, 101.5)])))
        stub.default("GET", "/api/v3/tradebook", Reply(ok(tradeBook=[
            {"orderNumber": ORDER_ID, "tradeNumber": "T1", "tradePrice": 101.5, "tradedQty": 150, "side": 1,
             "symbol": "NSE:NIFTY26D0326000CE", "fyToken": "101126120339395", "orderTag": f"2:{TAG}",
             "productType": "INTRADAY", "orderDateTime": "01-Dec-2026 09:15:03"}])))
        stub.default("GET", "/api/v3/positions", Reply(ok(netPositions=[
            {"symbol": "NSE:NIFTY26D0326000CE", "fyToken": "101126120339395", "netQty": 150, "netAvg": 101.5,
             "productType": "INTRADAY", "cfBuyQty": 0, "cfSellQty": 0},
            {"symbol": "NSE:NIFTY26D0326000CE", "fyToken": "101126120339395", "netQty": -75, "netAvg": 100.0,
             "productType": "MARGIN", "cfBuyQty": 0, "cfSellQty": 75},
            {"symbol": "NSE:NIFTY26D0326100PE", "fyToken": "101126120339400", "netQty": 0, "netAvg": 0,
             "productType": "INTRADAY"}])))
        stub.default("GET", "/api/v3/funds", Reply(ok(fund_limit=[
            {"id": 1, "title": "Total Balance", "equityAmount": 100000.0, "commodityAmount": 0},
            {"id": 2, "title": "Utilized Amount", "equityAmount": 15225.0, "commodityAmount": 0},
            {"id": 10, "title": "Available Balance", "equityAmount": 84775.25, "commodityAmount": 0}])))
        book = await broker.book()
        assert [t.price for t in book.trades] == [10_150] and book.orders[0].status is OrderStatus.COMPLETE
        [held, flat] = book.positions
        assert (held.quantity, held.overnight_quantity) == (75, -75) and flat.quantity == 0
        assert await broker.positions() == {101126120339395: 75}
        view = await broker.margins()
        assert (view.available, view.used) == (8_477_525, 1_522_500)
        stub.script("POST", "/api/v3/multiorder/margin",
                    Reply(ok(data={"margin_avail": 84775.25, "margin_total": 15225.0, "margin_new_order": 15225.0})),
                    Reply(ok(data={"margin_avail": 1.0})))
        assert await broker.order_margin(request().intent) == 1_522_500
        [sent] = stub.calls("POST", "/api/v3/multiorder/margin")
        assert sent["data"][0]["symbol"] == "NSE:NIFTY26D0326000CE" and sent["data"][0]["limitPrice"] == 101.5
        with pytest.raises(BrokerUnavailable):  # a reply without the figure: never a guessed 0
            await broker.order_margin(request().intent)
        exit_intent = dataclasses.replace(request().intent, purpose=IntentPurpose.EXIT)
        assert await broker.order_margin(exit_intent) == 0
        assert len(stub.calls("POST", "/api/v3/multiorder/margin")) == 2  # an exit is not asked about


async def test_an_unreadable_book_row_is_unavailable_not_guessed() -> None:
    async with fyers_stub() as (stub, client):
        broker, _ = make(client)
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(6, fyToken="NSE:X")])))
        with pytest.raises(BrokerUnavailable):
            await broker.open_orders()


# --- the order socket ----------------------------------------------------------------------------------------------


async def test_order_socket_feeds_the_broker_and_resyncs_after_a_reconnect() -> None:
    seen: list[tuple[str | None, str]] = []
    sessions = 0
    while_away: list[Any] = []  # what happens at the venue while the socket is down
    resynced = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        nonlocal sessions
        sessions += 1
        seen.append((ws.request.headers.get("authorization") if ws.request else None, str(await ws.recv())))
        if sessions == 1:
            async with asyncio.timeout(5):
                await resynced.wait()  # the start-up resync read the book before anything filled
            part = {"id": ORDER_ID, "qty": 150, "qty_filled": 75, "price_traded": 101.5, "org_ord_status": 6,
                    "ord_type": 1, "tran_side": 1, "ordertag": TAG, "symbol": "NSE:NIFTY26D0326000CE"}
            await ws.send("not json")
            await ws.send(json.dumps({"s": "ok", "orders": part}))
            await ws.send(json.dumps({"s": "ok", "orders": part}))  # duplicated
            await ws.send(json.dumps({"s": "ok", "trades": {"id_fill": "T1", "id": ORDER_ID}}))
            await ws.send("pong")
            while_away[0]()
            await ws.close()  # dropped: the rest fills while the client is away
        else:
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server, fyers_stub() as (stub, client):
        port = next(iter(server.sockets)).getsockname()[1]
        broker, events = make(client)
        stub.script("POST", "/api/v3/orders/sync", Reply(ok(id=ORDER_ID)))
        await broker.place_order(request())
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(6)])))  # the first connect's resync
        while_away.append(lambda: stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(2, 150, 101.75)]))))
        trades: list[dict[str, Any]] = []

        completed: list[int] = []

        async def resync() -> None:
            await broker.resync()
            completed.append(1)
            resynced.set()

        socket = FyersOrderSocket("XB12345-100", "TOK", url=f"ws://127.0.0.1:{port}",
                                  on_order=broker.on_order_message, on_trade=trades.append,
                                  on_reconnect=resync, initial_backoff_s=0.01)
        socket.start()
        await wait_for(lambda: len(completed) == 2)  # one at the first connect, one after the reconnect
        await socket.close()
        assert seen[0] == ("XB12345-100:TOK", json.dumps(SUBSCRIBE)) and len(seen) == 2
        assert socket.dropped == 1 and len(trades) == 1
        fills = [(e.quantity, e.price) for e in events if isinstance(e, Fill)]
        assert fills == [(75, 10_150), (75, 10_200)]  # each once: the duplicate added nothing, resync the rest


async def test_order_socket_refused_token_waits_for_a_new_one() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("authorization") != "XB12345-100:GOOD":
            return connection.respond(401, "token expired\n")
        return None

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        refused: list[str] = []
        socket = FyersOrderSocket("XB12345-100", "OLD", url=f"ws://127.0.0.1:{port}", on_order=lambda m: None,
                                  on_token_rejected=lambda token, detail: refused.append(token),
                                  initial_backoff_s=0.01)
        socket.start()
        await wait_for(lambda: refused == ["OLD"])
        assert socket.connections == 0 and socket.reconnects == 0  # no reconnect storm with a dead token
        socket.set_access_token("GOOD")
        await wait_for(lambda: socket.connected)
        await socket.close()


# --- the venue (the data socket is another module's: a stand-in records how it is built) --------------------------


class FakeDataSocket:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        self.tokens: list[str] = []
        self.closed = 0

    def attach(self, publish: Any) -> None:
        self.publish = publish

    def set_access_token(self, token: str) -> None:
        self.tokens.append(token)

    async def close(self) -> None:
        self.closed += 1


async def test_the_venue_connects_market_and_order_socket(tmp_path: Path) -> None:
    made: list[FakeDataSocket] = []

    def factory(*args: Any, **kwargs: Any) -> Any:
        made.append(FakeDataSocket(*args, **kwargs))
        return made[-1]

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    nse = (Path(__file__).parent / "fixtures" / "fyers" / "NSE_FO.csv").read_text()
    clock = SimClock(1_796_097_000 * NS_PER_SECOND)  # 2026-12-01 09:20 IST
    async with serve(handler, "127.0.0.1", 0) as server, fyers_stub(clock=clock) as (stub, client):
        port = next(iter(server.sockets)).getsockname()[1]
        base = client.api_root.removesuffix("/api/v3")
        stub.script("GET", "/sym/NSE_FO.csv", Reply(nse, raw=True))
        stub.script("GET", "/data/quotes", Reply(ok(d=[{"n": "NSE:NIFTY50-INDEX", "s": "ok",
                                                        "v": {"lp": 26010.4, "tt": 1796097000}}])))
        settings = Settings(data_dir=tmp_path, fyers=FyersSettings(
            app_id="XB12345-100", access_token=SecretStr(client.access_token or ""), api_root=client.api_root,
            data_root=client.data_root, symbols_root=f"{base}/sym", order_ws_url=f"ws://127.0.0.1:{port}"))
        venue = FyersVenue(settings, clock=clock, rest=client, data_socket_factory=factory)
        venue_port: Venue = venue  # mypy checks FyersVenue against the port
        assert venue_port.name == "fyers"
        broker = venue.build_broker(clock)
        assert isinstance(broker, FyersBroker) and venue.build_broker(clock) is broker
        published: list[object] = []
        market = await venue.connect_market(underlyings=[underlying_spec("NIFTY")], instruments=InstrumentMaster(),
                                            clock=clock, calendar=MarketCalendar(), publish=published.append,
                                            broker=broker)
        [data] = made
        assert market is venue.market and data.args[0] == client.access_token
        assert venue.watcher is not None and data.kwargs["on_token_rejected"] == venue.watcher.report_rejected
        assert data.kwargs["unreachable_after_s"] == settings.broker_unreachable_halt_seconds
        assert data.args[1][0] == 101000000026000 and data.kwargs["url"] == settings.fyers.data_ws_url
        assert data.kwargs["symbols"] == {101000000026000: "NSE:NIFTY50-INDEX"}  # the index, by its Fyers ticker
        assert venue.order_socket is not None
        await wait_for(lambda: venue.order_socket is not None and venue.order_socket.connected)
        assert venue.describe()["order_ws_url"] == f"ws://127.0.0.1:{port}"
        assert "secret" not in " ".join(venue.describe().values()).lower()
        await venue.close()
        await venue.close()  # idempotent
        assert data.closed == 1


async def test_order_socket_pings_and_answers_nothing_to_pong() -> None:
    received: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(str(message))
            if message == "ping":
                await ws.send("pong")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        orders: list[dict[str, Any]] = []
        socket = FyersOrderSocket("XB12345-100", "TOK", url=f"ws://127.0.0.1:{port}", on_order=orders.append,
                                  ping_interval_s=0.01)
        socket.start()
        await wait_for(lambda: received.count("ping") >= 2)
        await socket.close()
    assert received[0] == json.dumps(SUBSCRIBE) and orders == [] and socket.dropped == 0


# --- reports that contradict the order they name (review + fault injection of issue #12) ---------------------------

TAG_B = "ENT0ABCDEF100000002"
ID_B = "26120100002"


def message(order_id: str = ORDER_ID, tag: str = TAG, filled: int = 0, price: float = 0.0, status: int = 6,
            **changes: Any) -> dict[str, Any]:
    orders = {"id": order_id, "qty": 150, "qty_filled": filled, "price_traded": price, "org_ord_status": status,
              "ord_type": 1, "tran_side": 1, "ordertag": tag, "symbol": "NSE:NIFTY26D0326000CE", **changes}
    return {"s": "ok", "orders": orders}


async def place_two(stub: Any, broker: FyersBroker) -> None:
    """Intent A (TAG): BUY 150 as ORDER_ID; intent B (TAG_B): BUY 50 of the same option as ID_B."""
    stub.script("POST", "/api/v3/orders/sync", Reply(ok(id=ORDER_ID)), Reply(ok(id=ID_B)))
    await broker.place_order(request())
    other = dataclasses.replace(intent(quantity=50), intent_id=TAG_B)
    await broker.place_order(OrderRequest(ts_ns=START_NS, intent=other, tag=TAG_B))


async def test_a_known_order_under_another_intents_tag_is_dropped_and_its_real_fill_kept() -> None:
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        await place_two(stub, broker)
        with captured_logs() as logs:
            broker.on_order_message(message(tag=TAG_B, filled=10, price=101.5, qty=50))  # A's id, B's tag
        assert events == []
        [line] = [entry for entry in logs if entry["event"] == "postback_tag_mismatch"]
        assert (line["level"], line["tag"], line["reported_tag"]) == ("warning", TAG, TAG_B)
        broker.on_order_message(message(filled=150, price=101.5, status=2))  # A's real, complete fill
        assert [(f.intent_id, f.quantity) for f in events if isinstance(f, Fill)] == [(TAG, 150)]


@pytest.mark.parametrize("claim", [{"tran_side": -1}, {"symbol": "NSE:BANKNIFTY26D0350000PE"},
                                   {"symbol": "BSE:NIFTY26D0326000CE"}])
async def test_a_known_order_reported_for_another_contract_or_side_is_dropped(claim: dict[str, Any]) -> None:
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        await place_two(stub, broker)
        with captured_logs() as logs:
            broker.on_order_message(message(filled=150, price=101.5, status=2, **claim))
        assert events == []
        assert [entry["level"] for entry in logs if entry["event"] == "postback_contradicts_order"] == ["error"]
        broker.on_order_message(message(filled=150, price=101.5, status=2))
        assert [(f.side, f.quantity) for f in events if isinstance(f, Fill)] == [(Side.BUY, 150)]


async def test_a_traded_message_without_filled_qty_is_dropped_and_resync_books_the_fill() -> None:
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        await place_two(stub, broker)
        traded = message(price=101.5, status=2)
        del traded["orders"]["qty_filled"]
        broker.on_order_message(traded)
        assert events == [] and broker.dropped == 1  # never a COMPLETE with nothing filled
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(2, 150, 101.5)])))
        await broker.resync()
        assert [(f.quantity, f.price) for f in events if isinstance(f, Fill)] == [(150, 10_150)]
        assert [e.status for e in events if isinstance(e, OrderUpdate)] == [OrderStatus.COMPLETE]



async def test_a_book_row_under_our_tag_for_another_contract_is_neither_booked_nor_adopted() -> None:
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        assert broker.tracker is not None
        broker.tracker.expect(request().intent, TAG)  # placed; the reply was lost (a timeout)
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[
            row(2, 150, 101.5, id="999", symbol="NSE:BANKNIFTY26D0359000PE", side=-1)])))
        with captured_logs() as logs:
            await broker.resync()
            assert events == [] and not broker.tracker.is_known("999")
            # nor may the look-up by tag adopt it (its fills would become ours) or say "absent" (the execution actor
            # would send the order again): the broker "could not say", so the intent stays unresolved
            with pytest.raises(BrokerUnavailable, match="not our order"):
                await broker.find_order_by_tag(TAG)
        assert [entry["level"] for entry in logs if entry["event"] == "postback_contradicts_order"] == ["error"]
        assert [entry["level"] for entry in logs
                if entry["event"] == "order_book_row_contradicts_our_order"] == ["error"]
        assert not broker.tracker.is_known("999")


async def test_a_trade_row_without_a_trade_number_is_refused_not_given_one() -> None:
    async with fyers_stub() as (stub, client):
        broker, _ = make(client)
        trade = {"orderNumber": ORDER_ID, "tradeNumber": "T1", "tradePrice": 101.5, "tradedQty": 75, "side": 1,
                 "symbol": "NSE:NIFTY26D0326000CE", "fyToken": "101126120339395", "orderTag": f"2:{TAG}"}
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[row(2, 150, 101.5)])))
        stub.default("GET", "/api/v3/positions", Reply(ok(netPositions=[])))
        for missing in ("", None, "  "):  # two trades of one order under one made-up id: reconciliation kept one
            stub.default("GET", "/api/v3/tradebook", Reply(ok(tradeBook=[trade, {**trade, "tradeNumber": missing}])))
            with pytest.raises(BrokerUnavailable, match="without a tradeNumber"):
                await broker.book()
        stub.default("GET", "/api/v3/tradebook", Reply(ok(tradeBook=[trade, {**trade, "tradeNumber": 25120100002}])))
        assert [t.trade_id for t in (await broker.book()).trades] == ["T1", "25120100002"]


async def test_the_execution_actor_neither_adopts_nor_resends_when_our_tag_names_another_contract() -> None:
    """The look-up's refusal as the execution actor sees it: the order's write timed out, the order book shows a row
    under our tag for another contract; the intent stays unresolved and the order is not sent again."""
    async with fyers_stub() as (stub, client):
        broker, events = make(client)
        clock = SimClock(START_NS, speed=0)
        actor = ExecutionActor(EventBus(), broker, clock, retry=RetryPolicy(settle_s=0, backoff_s=0))
        stub.default("POST", "/api/v3/orders/sync", Reply(error(-1, "gateway timeout"), status=504))
        stub.default("GET", "/api/v3/orders", Reply(ok(orderBook=[
            row(2, 150, 101.5, id="999", symbol="NSE:BANKNIFTY26D0359000PE", side=-1)])))
        await actor.handle(request())
        await actor.settle()
        assert len(stub.calls("POST", "/api/v3/orders/sync")) == 1 and actor.unresolved == 1
        clock.jump_to(START_NS + 60 * NS_PER_SECOND)  # past the reconcile interval: looked up again, still refused
        lookups = len(stub.calls("GET", "/api/v3/orders"))
        await actor.handle(request())
        await actor.settle()
        assert len(stub.calls("GET", "/api/v3/orders")) > lookups
        assert len(stub.calls("POST", "/api/v3/orders/sync")) == 1 and actor.unresolved == 1
        assert [e for e in events if isinstance(e, Fill)] == []
