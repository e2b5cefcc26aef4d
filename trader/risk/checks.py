"""The risk core's entry checks, in the order they run; each returns "" to pass, else the reason a human can act on.

``EntryChecks`` is mixed into ``RiskManager``: it reads the manager's state through the attributes declared below and
changes none of it. An intent that reduces a filled position never reaches these checks (exits are never refused
for limits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from trader.book import PositionBook
from trader.events import Side
from trader.market.calendar import MarketCalendar
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import OptionContract, freeze_quantity
from trader.money import format_inr
from trader.ratelimit import RateLimiter
from trader.risk.config import RiskConfig
from trader.risk.margin import modelled_account_margin, modelled_order_margin


@dataclass(slots=True)
class Pending:
    """An approved intent not yet done; it holds a position slot (and, as an entry, exposure) meanwhile."""

    token: int
    underlying: str
    side: Side
    remaining: int
    price: int
    reduces: bool  # it was an exit when approved


@dataclass(frozen=True, slots=True)
class EntryOrder:
    """One entry intent being checked, with everything the checks need."""

    contract: OptionContract  # with a non-zero instrument token (see RiskManager._keyed)
    side: Side
    quantity: int
    price: int
    local: datetime  # IST wall time of the intent
    ts_ns: int
    stop_loss_price: int | None
    margin_required: int | None
    margin_available: int | None
    margin_used: int | None
    price_band: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class Margins:
    required: int
    available: int
    used: int
    modelled: bool


def pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


class EntryChecks:
    config: RiskConfig
    book: PositionBook
    capital: int
    risk_per_trade_limit: int
    max_order_value: int
    min_margin_buffer: int
    _calendar: MarketCalendar | None
    _instruments: InstrumentMaster | None
    _pending: dict[str, Pending]
    _order_rate: RateLimiter

    def _margins(self, order: EntryOrder) -> Margins:
        modelled = order.margin_required is None or order.margin_available is None
        used, available = (modelled_account_margin(self.book, self.capital) if modelled else (0, 0))
        required = order.margin_required
        if required is None:
            required = modelled_order_margin(self.book, order.contract, order.side, order.quantity, order.price)
        if order.margin_available is not None:
            available = order.margin_available
            used = order.margin_used if order.margin_used is not None else 0
        return Margins(required=required, available=available, used=used, modelled=modelled)

    # -- the entry checks, in order (each returns "" to pass, else the reason) --------------------------------
    def _check_tradable(self, order: EntryOrder) -> str:
        contract, today = order.contract, order.local.date()
        if contract.expiry < today:
            return (f"{contract.tradingsymbol} expired on {contract.expiry.isoformat()} (today is "
                    f"{today.isoformat()} IST): it is not tradable")
        if self._instruments is None:
            return ""
        listed = self._instruments.contract(symbol_key(contract))
        if listed is None:
            return (f"{contract.exchange}:{contract.tradingsymbol} is not in the instrument master (today's "
                    "instrument dump): it is not tradable")
        if listed.lot_size != contract.lot_size:
            return (f"{contract.tradingsymbol} has lot size {contract.lot_size} but the instrument master says "
                    f"{listed.lot_size}: build the contract from the instrument dump")
        return ""

    def _check_window(self, order: EntryOrder) -> str:
        config, local = self.config, order.local
        if self._calendar is not None and not self._calendar.is_trading_day(local.date()):
            return f"{local:%A %Y-%m-%d} is not an NSE/BSE trading day: no new entries"
        now = local.time()
        if now < config.no_entry_before or now > config.no_entry_after:
            return (f"new entries are allowed only {config.no_entry_before:%H:%M}-{config.no_entry_after:%H:%M} "
                    f"IST (no_entry_before/no_entry_after); it is {now:%H:%M:%S} IST")
        return ""

    def _check_lots(self, order: EntryOrder) -> str:
        lot, most = order.contract.lot_size, self.config.max_lots_per_trade
        lots = order.quantity // lot
        if lots > most:
            return (f"{lots} lots exceeds max_lots_per_trade={most}: order at most {most} lot(s) "
                    f"({most * lot} units) of {order.contract.tradingsymbol}")
        return ""

    def _check_freeze(self, order: EntryOrder) -> str:
        contract = order.contract
        freeze = freeze_quantity(contract.underlying)
        if order.quantity > freeze:
            lots = freeze // contract.lot_size
            return (f"quantity {order.quantity} exceeds the {contract.underlying} freeze quantity of {freeze} units "
                    f"per order: at most {lots} lots ({lots * contract.lot_size} units) per order")
        return ""

    def _check_symbol_positions(self, order: EntryOrder) -> str:
        occupied = self._occupied_tokens()
        underlying, most = order.contract.underlying, self.config.max_positions_per_symbol
        if order.contract.instrument_token in occupied:
            return ""  # adding to a position (or to a pending order) opens no new one
        count = sum(1 for name in occupied.values() if name == underlying)
        if count >= most:
            return (f"{count} {underlying} positions are open or pending, max_positions_per_symbol={most}: "
                    "close one before opening another")
        return ""

    def _check_total_positions(self, order: EntryOrder) -> str:
        occupied = self._occupied_tokens()
        most = self.config.max_total_positions
        if order.contract.instrument_token not in occupied and len(occupied) >= most:
            return (f"{len(occupied)} positions are open or pending, max_total_positions={most}: "
                    "close one before opening another")
        return ""

    def _check_price(self, order: EntryOrder) -> str:
        if order.price <= 0:
            return (f"no price to check the order against (got {format_inr(order.price)}): give a limit price or "
                    "the expected price")
        return ""

    def _check_order_value(self, order: EntryOrder) -> str:
        value = order.quantity * order.price
        if value > self.max_order_value:
            lot = order.contract.lot_size
            lots = self.max_order_value // (lot * order.price)
            fix = f"at most {lots} lot(s) at this price" if lots else "not even one lot fits at this price"
            return (f"order value {format_inr(value)} ({order.quantity} × {format_inr(order.price)}) exceeds "
                    f"max_order_value {format_inr(self.max_order_value)}: {fix}")
        return ""

    def _check_risk_per_trade(self, order: EntryOrder) -> str:
        """Premium at risk to the stop: a long loses down to the stop, a short up to it; no stop → the default."""
        stop, price, quantity = order.stop_loss_price, order.price, order.quantity
        if stop is None:
            fraction = self.config.default_stop_loss_pct
            per_unit = price * fraction
            how = f"default stop {pct(fraction)} of the premium, as no stop-loss was given"
        else:
            wrong_side = stop >= price if order.side is Side.BUY else stop <= price
            if stop <= 0 or wrong_side:
                where = "below" if order.side is Side.BUY else "above"
                return (f"stop-loss {format_inr(stop)} must be {where} the {order.side.value} price "
                        f"{format_inr(price)} (and positive)")
            per_unit = abs(price - stop)
            how = f"to the stop-loss {format_inr(stop)}"
        at_risk = round(quantity * per_unit)
        limit = self.risk_per_trade_limit
        if at_risk <= limit:
            return ""
        lot = order.contract.lot_size
        lots = int(limit // (per_unit * lot)) if per_unit > 0 else 0
        fix = (f"at most {lots} lot(s) with this stop" if lots
               else "not even one lot fits: give a closer stop-loss or choose a cheaper strike")
        return (f"premium at risk {format_inr(at_risk)} ({how}) exceeds max_risk_per_trade_pct="
                f"{self.config.max_risk_per_trade_pct:g} of capital = {format_inr(limit)}: {fix}")

    def _check_margin_buffer(self, order: EntryOrder) -> str:
        margins = self._margins(order)
        left = margins.available - margins.required
        if left < self.min_margin_buffer:
            source = " (modelled: premium for buys, an estimate for sells)" if margins.modelled else ""
            return (f"margin left after the order {format_inr(left)} would be below min_margin_buffer "
                    f"{format_inr(self.min_margin_buffer)} (available {format_inr(margins.available)}, "
                    f"this order needs {format_inr(margins.required)}){source}")
        return ""

    def _check_margin_utilisation(self, order: EntryOrder) -> str:
        margins = self._margins(order)
        capacity = margins.used + margins.available
        after = (margins.used + margins.required) / capacity if capacity > 0 else 1.0
        most = self.config.max_margin_utilisation_pct
        if after > most:
            return (f"margin utilisation after the order would be {after:.1%}, above max_margin_utilisation_pct="
                    f"{most:g} (used {format_inr(margins.used)} + this order {format_inr(margins.required)} of "
                    f"{format_inr(capacity)})")
        return ""

    def _check_order_rate(self, order: EntryOrder) -> str:
        sent, most = self._orders_in_second(order.ts_ns), self.config.max_orders_per_second
        if sent >= most:
            return (f"{sent} orders sent in the last second, max_orders_per_second={most} (Kite allows 10/s): "
                    "retry in the next second")
        return ""

    def _check_price_band(self, order: EntryOrder) -> str:
        if order.price_band is None:
            return ""
        low, high = order.price_band
        if not low <= order.price <= high:
            return (f"price {format_inr(order.price)} is outside the day's price band "
                    f"{format_inr(low)}-{format_inr(high)}: the exchange would reject it")
        return ""


    def _occupied_tokens(self) -> dict[int, str]:
        """Instrument token → underlying of every open position and every pending approved intent."""
        occupied = {p.contract.instrument_token: p.contract.underlying for p in self.book.open_positions()}
        occupied.update((p.token, p.underlying) for p in self._pending.values())
        return occupied

    def _orders_in_second(self, ts_ns: int) -> int:
        return self._order_rate.used(ts_ns)


ENTRY_CHECKS: tuple[tuple[str, Callable[[EntryChecks, EntryOrder], str]], ...] = (
    ("tradable", EntryChecks._check_tradable),
    ("window", EntryChecks._check_window),
    ("lots", EntryChecks._check_lots),
    ("freeze", EntryChecks._check_freeze),
    ("symbol_positions", EntryChecks._check_symbol_positions),
    ("total_positions", EntryChecks._check_total_positions),
    ("price", EntryChecks._check_price),
    ("order_value", EntryChecks._check_order_value),
    ("risk_per_trade", EntryChecks._check_risk_per_trade),
    ("margin_buffer", EntryChecks._check_margin_buffer),
    ("margin_utilisation", EntryChecks._check_margin_utilisation),
    ("order_rate", EntryChecks._check_order_rate),
    ("price_band", EntryChecks._check_price_band),
)


def whole_lots_problem(contract: OptionContract, quantity: int) -> str:
    lot = contract.lot_size
    if quantity <= 0:
        return f"quantity {quantity} must be a positive whole number of lots (lot size {lot})"
    if quantity % lot:
        below = quantity // lot * lot
        options = f"{below} or {below + lot}" if below else f"{lot}"
        return (f"quantity {quantity} is not a whole number of lots (lot size {lot} for "
                f"{contract.tradingsymbol}): use {options}")
    return ""


def symbol_key(contract: OptionContract) -> str:
    return f"{contract.exchange}:{contract.tradingsymbol}"


def naked_short_problem(held: int, selling: int, quantity: int, tradingsymbol: str) -> str:
    """Why a sell would leave the account net short an option ("" if it would not)."""
    if held - selling - quantity >= 0:
        return ""
    return (f"selling {quantity} of {tradingsymbol} would leave the account net short (held {held}, sells in flight "
            f"{selling}): a naked short option is refused (risk.allow_short_options=false); if the position was "
            "closed outside the daemon, there is nothing left to exit")
