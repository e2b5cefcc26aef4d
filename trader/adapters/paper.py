"""Paper broker: simulated fills against the live (or synthetic) order book.

Fill rules, chosen to err on the pessimistic side:
- An order becomes active ``latency`` after it is placed and is matched on the first quote of its instrument after
  that (never on the quote the strategy decided on).
- MARKET (and triggered SL-M) orders take the opposite side of the book plus ``slippage_ticks`` adverse ticks, but
  never beyond the market-protection price (Kite converts such orders to a limit at that price; the unfilled rest
  stays open).
- LIMIT (and triggered SL) orders fill when the opposite side crosses the limit, at the touch plus slippage, capped
  at the limit.
- Only the quantity shown at the touch fills on one quote; the rest waits for the next quote (partial fills), and
  two orders cannot take the same displayed quantity twice.
- SL / SL-M trigger on the last traded price (buy: LTP ≥ trigger; sell: LTP ≤ trigger).
- With a calendar, orders are DAY orders: one still open when a quote after the session close arrives is cancelled.
Every fill carries the price the intent expected, so slippage is measured on every fill.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from trader.adapters.ports import BrokerBook, BrokerOrder, BrokerPosition, BrokerTrade, MarginView, OrderRejected
from trader.book import PositionBook
from trader.clock import Clock
from trader.events import Fill, OrderIntent, OrderRequest, OrderStatus, OrderType, OrderUpdate, Side, Tick
from trader.market.calendar import MarketCalendar, ist_date
from trader.market.charges import option_charges
from trader.money import rupee_text
from trader.risk.margin import modelled_account_margin, modelled_order_margin

# Kite's automatic market protection (market_protection = -1) picks a band itself; users report about 3 % for
# options priced ₹10–100 (docs/reference/india-fno-facts.md §5.2). We model it as 3 %.
AUTO_MARKET_PROTECTION_PCT = 3.0
_NEVER = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PaperBrokerConfig:
    latency_ms: int = 150
    slippage_ticks: int = 1

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError(f"paper latency_ms must be >= 0, got {self.latency_ms}")
        if self.slippage_ticks < 0:
            raise ValueError(f"paper slippage_ticks must be >= 0, got {self.slippage_ticks}")


@dataclass(slots=True)
class _PaperOrder:
    order_id: str
    request: OrderRequest
    status: OrderStatus
    active_at_ns: int
    order_type: OrderType
    limit_price: int = 0  # for MARKET orders: the protection cap, set on activation
    filled: int = 0
    fill_value: int = 0  # Σ price × qty, for the average price
    fills: int = 0
    triggered: bool = False
    expires_at_ns: int = 0

    @property
    def remaining(self) -> int:
        return self.request.intent.quantity - self.filled

    @property
    def average_price(self) -> int:
        return round(self.fill_value / self.filled) if self.filled else 0


class PaperBroker:
    """Implements the ``Broker`` port in memory."""

    def __init__(self, clock: Clock, config: PaperBrokerConfig | None = None,
                 calendar: MarketCalendar | None = None, *, capital: int = 10_000_000) -> None:
        self._clock = clock
        self._capital = capital  # paise
        self._book = PositionBook()  # the account as the broker sees it, for margins
        self._config = config or PaperBrokerConfig()
        self._calendar = calendar  # when given, orders are DAY orders: whatever is open at the close is cancelled
        self._publish: Callable[[object], None] = _drop
        self._orders: dict[str, _PaperOrder] = {}
        self._by_tag: dict[str, list[str]] = {}
        self._working: dict[int, list[_PaperOrder]] = {}  # instrument token → orders not yet terminal
        self._taken: dict[int, tuple[int, int]] = {}  # token → (bid qty taken, ask qty taken) on the current quote
        self._next_order = 0
        self._trades: list[BrokerTrade] = []
        self._persist: Callable[[], None] | None = None

    # -- Broker port ---------------------------------------------------------------------------------------
    def attach(self, publish: Callable[[object], None]) -> None:
        self._publish = publish

    def persist_with(self, save: Callable[[], None]) -> None:
        """``save`` is called after every change of the book (orders, trades, positions), before the change is
        published: paper survives a restart the way a real broker's account does (see ``paper_state.py``)."""
        self._persist = save

    def clock_now(self) -> int:
        return self._clock.now_ns()

    def _save(self) -> None:
        if self._persist is not None:
            self._persist()

    @property
    def wants_ticks(self) -> bool:
        return True

    async def place_order(self, request: OrderRequest) -> str:
        intent = request.intent
        self._validate(request)
        self._next_order += 1
        order_id = f"PAPER{self._next_order:010d}"
        now = self._clock.now_ns()
        order = _PaperOrder(
            order_id=order_id,
            request=request,
            status=OrderStatus.TRIGGER_PENDING if intent.order_type in (OrderType.SL, OrderType.SL_M)
            else OrderStatus.OPEN,
            active_at_ns=now + self._config.latency_ms * 1_000_000,
            order_type=intent.order_type,
            limit_price=intent.limit_price,
            expires_at_ns=self._session_close(now),
        )
        self._orders[order_id] = order
        self._by_tag.setdefault(request.tag, []).append(order_id)
        self._working.setdefault(intent.contract.instrument_token, []).append(order)
        self._save()
        self._update(order, now)
        return order_id

    async def cancel_order(self, order_id: str) -> None:
        order = self._orders.get(order_id)
        if order is None:
            raise OrderRejected(f"order {order_id} does not exist")
        if order.status.is_terminal:
            raise OrderRejected(f"order {order_id} is already {order.status.value}")
        order.status = OrderStatus.CANCELLED
        self._retire(order)
        self._save()
        self._update(order, self._clock.now_ns(), reason="cancelled by user")

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        ids = self._by_tag.get(tag)
        return self._view(self._orders[ids[-1]]) if ids else None

    async def open_orders(self) -> list[BrokerOrder]:
        return [self._view(o) for o in self._orders.values() if not o.status.is_terminal]

    async def margins(self) -> MarginView:
        """Long options block their premium (paid up front); shorts block an estimate of SPAN + exposure."""
        used, available = modelled_account_margin(self._book, self._capital)
        return MarginView(available=available, used=used)

    async def resync(self) -> None:
        """Nothing is ever missed: the paper broker publishes every update as it happens."""

    async def positions(self) -> dict[int, int]:
        return {p.contract.instrument_token: p.quantity for p in self._book.open_positions()}

    async def book(self) -> BrokerBook:
        return BrokerBook(
            orders=tuple(self._view(o) for o in self._orders.values()), trades=tuple(self._trades),
            positions=tuple(BrokerPosition(instrument_token=p.contract.instrument_token,
                                           tradingsymbol=p.contract.tradingsymbol, quantity=p.quantity,
                                           average_price=p.average_price) for p in self._book.open_positions()))

    def adopt(self, request: OrderRequest, order_id: str, filled: int, filled_value: int) -> None:
        """Nothing to do: the restored book already ties every order to its request."""

    async def order_margin(self, intent: OrderIntent) -> int:
        return modelled_order_margin(self._book, intent.contract, intent.side, intent.quantity,
                                     intent.limit_price or intent.expected_price)

    def orders_with_tag(self, tag: str) -> int:
        return len(self._by_tag.get(tag, ()))

    def on_tick(self, tick: Tick) -> None:
        token = tick.instrument_token
        self._taken[token] = (0, 0)
        orders = self._working.get(token)
        if not orders:
            return
        for order in list(orders):
            if tick.ts_ns >= order.expires_at_ns:
                order.status = OrderStatus.CANCELLED
                self._retire(order)
                self._save()
                self._update(order, tick.ts_ns, reason="DAY order expired at the session close")
            elif tick.ts_ns >= order.active_at_ns:
                self._match(order, tick)

    # -- matching ------------------------------------------------------------------------------------------
    def _match(self, order: _PaperOrder, book: Tick) -> None:
        intent = order.request.intent
        side = intent.side
        if order.status is OrderStatus.TRIGGER_PENDING:
            ltp = book.last_price
            hit = ltp >= intent.trigger_price if side is Side.BUY else ltp <= intent.trigger_price
            if not hit:
                return
            order.status = OrderStatus.OPEN
            order.triggered = True
            order.order_type = OrderType.MARKET if intent.order_type is OrderType.SL_M else OrderType.LIMIT
            self._save()  # a restart must find the stop triggered, as a real broker's book would
            self._update(order, book.ts_ns, reason="triggered")
        if order.order_type is OrderType.MARKET and order.limit_price == 0:
            order.limit_price = self._protection_price(intent.market_protection, side, book,
                                                       intent.contract.tick_size)
            if order.limit_price == 0:
                return  # no price to anchor the protection band on yet: wait for a quote that has one
        touch, shown = (book.ask, book.ask_qty) if side is Side.BUY else (book.bid, book.bid_qty)
        if touch <= 0:
            return
        taken_bid, taken_ask = self._taken.get(book.instrument_token, (0, 0))
        available = shown - (taken_ask if side is Side.BUY else taken_bid)
        if available <= 0:
            return
        if side is Side.BUY and touch > order.limit_price:
            return
        if side is Side.SELL and touch < order.limit_price:
            return
        slip = self._config.slippage_ticks * intent.contract.tick_size
        price = min(touch + slip, order.limit_price) if side is Side.BUY else max(touch - slip, order.limit_price)
        quantity = min(order.remaining, available)
        lot = intent.contract.lot_size
        if quantity < order.remaining:
            quantity -= quantity % lot  # exchange fills in whole lots for index options
            if quantity == 0:
                return
        self._taken[book.instrument_token] = (
            (taken_bid, taken_ask + quantity) if side is Side.BUY else (taken_bid + quantity, taken_ask)
        )
        self._fill(order, quantity, price, book.ts_ns)

    @staticmethod
    def _protection_price(protection_pct: float, side: Side, book: Tick, tick_size: int) -> int:
        pct = AUTO_MARKET_PROTECTION_PCT if protection_pct == -1 else protection_pct
        reference = book.last_price or (book.ask if side is Side.BUY else book.bid)
        if reference <= 0:
            return 0
        if side is Side.BUY:
            raw = reference * (1 + pct / 100)
            return math.ceil(raw / tick_size) * tick_size
        raw = reference * (1 - pct / 100)
        return max(tick_size, math.floor(raw / tick_size) * tick_size)

    def _fill(self, order: _PaperOrder, quantity: int, price: int, ts_ns: int) -> None:
        intent = order.request.intent
        order.fills += 1
        order.filled += quantity
        order.fill_value += quantity * price
        trade_date = ist_date(ts_ns)
        charges = option_charges(
            exchange=intent.contract.exchange,
            side=intent.side,
            quantity=quantity,
            price=price,
            trade_date=trade_date,
            include_brokerage=order.fills == 1,  # Zerodha charges ₹20 once per executed order
        )
        self._book.apply(intent.contract, intent.side, quantity, price, charges.total)
        self._trades.append(BrokerTrade(trade_id=f"{order.order_id}T{order.fills}", order_id=order.order_id,
                                        instrument_token=intent.contract.instrument_token,
                                        tradingsymbol=intent.contract.tradingsymbol, side=intent.side,
                                        quantity=quantity, price=price))
        if order.remaining == 0:
            order.status = OrderStatus.COMPLETE
            self._retire(order)
        self._save()  # the broker's record first: a kill after this is a fill the restart finds at the broker
        self._publish(Fill(
            ts_ns=ts_ns,
            # The order's cumulative filled quantity, as for Kite: the same execution always has the same id.
            fill_id=f"{order.order_id}F{order.filled}",
            intent_id=intent.intent_id,
            order_id=order.order_id,
            contract=intent.contract,
            side=intent.side,
            quantity=quantity,
            price=price,
            expected_price=intent.expected_price,
            charges=charges.total,
            purpose=intent.purpose,
        ))
        self._update(order, ts_ns)

    # -- helpers -------------------------------------------------------------------------------------------
    def _validate(self, request: OrderRequest) -> None:
        intent = request.intent
        contract = intent.contract
        if intent.quantity <= 0 or intent.quantity % contract.lot_size:
            raise OrderRejected(
                f"quantity {intent.quantity} is not a positive multiple of the lot size {contract.lot_size} "
                f"for {contract.tradingsymbol}")
        if intent.order_type in (OrderType.MARKET, OrderType.SL_M):
            protection = intent.market_protection
            if not (protection == -1 or 0 < protection <= 100):
                raise OrderRejected(
                    f"market_protection {protection} is invalid for a {intent.order_type.value} order: "
                    "use -1 (automatic) or a percentage in (0, 100]")
        if intent.order_type in (OrderType.LIMIT, OrderType.SL):
            self._check_price("price", intent.limit_price, contract.tick_size)
        if intent.order_type in (OrderType.SL, OrderType.SL_M):
            self._check_price("trigger_price", intent.trigger_price, contract.tick_size)
        if intent.order_type is OrderType.SL and intent.side.sign * (intent.limit_price - intent.trigger_price) < 0:
            raise OrderRejected(
                f"{intent.side.value} SL price {rupee_text(intent.limit_price)} is on the wrong side of the trigger "
                f"{rupee_text(intent.trigger_price)}: a buy stop's limit must be at or above its trigger, a sell's at "
                "or below")

    def _session_close(self, now_ns: int) -> int:
        if self._calendar is None:
            return _NEVER
        open_ns = self._calendar.next_session_open(now_ns)
        return self._calendar.session_bounds(ist_date(open_ns))[1]

    @staticmethod
    def _check_price(name: str, price: int, tick_size: int) -> None:
        if price <= 0 or price % tick_size:
            raise OrderRejected(f"{name} {rupee_text(price)} must be positive and a multiple of the tick size "
                                f"{rupee_text(tick_size)}")

    def _retire(self, order: _PaperOrder) -> None:
        working = self._working.get(order.request.intent.contract.instrument_token)
        if working and order in working:
            working.remove(order)

    def _update(self, order: _PaperOrder, ts_ns: int, reason: str = "") -> None:
        self._publish(OrderUpdate(
            ts_ns=ts_ns,
            intent_id=order.request.intent.intent_id,
            order_id=order.order_id,
            status=order.status,
            filled_quantity=order.filled,
            pending_quantity=order.remaining if not order.status.is_terminal else 0,
            average_price=order.average_price,
            reason=reason,
        ))

    @staticmethod
    def _view(order: _PaperOrder) -> BrokerOrder:
        intent = order.request.intent
        return BrokerOrder(order_id=order.order_id, tag=order.request.tag, status=order.status,
                           quantity=intent.quantity, filled_quantity=order.filled,
                           average_price=order.average_price, instrument_token=intent.contract.instrument_token,
                           tradingsymbol=intent.contract.tradingsymbol, side=intent.side)


def _drop(_: object) -> None:
    raise RuntimeError("PaperBroker.attach() must be called before orders are placed")
