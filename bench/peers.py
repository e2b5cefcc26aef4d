"""The peers of ``bench/backtest.py``: the same day and a plain EMA(9)/EMA(21) crossover on 1-minute index bars through
NautilusTrader and backtrader (the optional ``bench`` extra). Imported only in an engine's own subprocess, only when
that peer is installed; see ``bench/backtest.py`` for what is comparable and what is not.

Each ``run_*`` gets the file's rows already read into Python lists (``ts`` ns, ``token``, ``last``/``bid``/``ask``
rupees, ``bid_qty``/``ask_qty``), converts them to the peer's own objects (timed apart, not counted), runs the peer
alone (timed, counted) and returns ``ticks`` (rows the strategy or the feeds consumed), ``seconds`` and
``cpu_seconds`` (the run: wall, and CPU of the process), ``load_seconds`` (the conversion), ``orders`` and the
peer's ``version``.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

STRIKE_STEP = 50


class Stopwatch:
    """Wall time and this process's CPU time (all its threads) since it was made."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def read(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self._wall, "cpu_seconds": time.process_time() - self._cpu}


class OptionLike(Protocol):
    @property
    def token(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def strike(self) -> int: ...
    @property
    def kind(self) -> str: ...


def _atm(spot: float, kind: str, by_strike: dict[tuple[int, str], Any]) -> Any:
    strike = round(spot / STRIKE_STEP) * STRIKE_STEP
    strikes = sorted({s for s, _ in by_strike}, key=lambda s: abs(s - strike))
    return by_strike[(strikes[0], kind)]


# -- NautilusTrader ---------------------------------------------------------------------------------------------------
def run_nautilus(data: Path, rows: dict[str, list[Any]], options: Sequence[OptionLike], spot_token: int, lot: int,
                 capital: float) -> dict[str, Any]:
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig  # noqa: PLC0415
    from nautilus_trader.config import LoggingConfig  # noqa: PLC0415
    from nautilus_trader.indicators import ExponentialMovingAverage  # noqa: PLC0415
    from nautilus_trader.model.currencies import INR  # noqa: PLC0415
    from nautilus_trader.model.data import Bar, BarType, QuoteTick, TradeTick  # noqa: PLC0415
    from nautilus_trader.model.enums import AccountType, AggressorSide, OmsType, OrderSide  # noqa: PLC0415
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, TradeId, TraderId, Venue  # noqa: PLC0415
    from nautilus_trader.model.instruments import Equity  # noqa: PLC0415
    from nautilus_trader.model.objects import Money, Price, Quantity  # noqa: PLC0415
    from nautilus_trader.trading.strategy import Strategy  # noqa: PLC0415

    venue = Venue("NSE")

    def instrument(symbol: str) -> Any:
        iid = InstrumentId(Symbol(symbol), venue)
        return Equity(instrument_id=iid, raw_symbol=Symbol(symbol), currency=INR, price_precision=2,
                      price_increment=Price.from_str("0.01"), lot_size=Quantity.from_int(1), ts_event=0, ts_init=0)

    index = instrument("NIFTY50")
    by_token = {spot_token: index}
    by_strike: dict[tuple[int, str], Any] = {}
    for option in options:
        by_token[option.token] = by_strike[(option.strike, option.kind)] = instrument(option.symbol)
    bar_type = BarType.from_str(f"{index.id}-1-MINUTE-LAST-INTERNAL")

    class EmaCross(Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.fast = ExponentialMovingAverage(9)
            self.slow = ExponentialMovingAverage(21)
            self.ticks = 0
            self.spot = 0.0
            self.above: bool | None = None
            self.holding: Any = None
            self.orders = 0

        def on_start(self) -> None:
            self.register_indicator_for_bars(bar_type, self.fast)
            self.register_indicator_for_bars(bar_type, self.slow)
            self.subscribe_bars(bar_type)
            self.subscribe_trade_ticks(index.id)
            for contract in by_strike.values():
                self.subscribe_quote_ticks(contract.id)

        def on_trade_tick(self, tick: TradeTick) -> None:
            self.ticks += 1
            self.spot = tick.price.as_double()

        def on_quote_tick(self, tick: QuoteTick) -> None:
            self.ticks += 1

        def on_bar(self, bar: Bar) -> None:
            if not self.slow.initialized:
                return
            above = self.fast.value > self.slow.value
            if self.above is not None and above != self.above:
                if self.holding is not None:
                    self.submit_order(self.order_factory.market(self.holding.id, OrderSide.SELL,
                                                                Quantity.from_int(lot)))
                    self.orders += 1
                self.holding = _atm(self.spot, "CE" if above else "PE", by_strike)
                self.submit_order(self.order_factory.market(self.holding.id, OrderSide.BUY, Quantity.from_int(lot)))
                self.orders += 1
            self.above = above

    t0 = time.perf_counter()
    ticks: list[Any] = []
    append = ticks.append
    trade_ids = 0
    for ts, token, last, bid, ask, bid_qty, ask_qty in zip(rows["ts"], rows["token"], rows["last"], rows["bid"],
                                                            rows["ask"], rows["bid_qty"], rows["ask_qty"],
                                                            strict=True):
        iid = by_token[token].id
        if token == spot_token or not (bid and ask):
            trade_ids += 1
            append(TradeTick(iid, Price(last, 2), Quantity.from_int(1), AggressorSide.NO_AGGRESSOR,
                             TradeId(str(trade_ids)), ts, ts))
        else:
            append(QuoteTick(iid, Price(bid, 2), Price(ask, 2), Quantity.from_int(bid_qty),
                             Quantity.from_int(ask_qty), ts, ts))
    engine = BacktestEngine(config=BacktestEngineConfig(trader_id=TraderId("BENCH-001"),
                                                        logging=LoggingConfig(log_level="ERROR")))
    engine.add_venue(venue=venue, oms_type=OmsType.NETTING, account_type=AccountType.CASH,
                     starting_balances=[Money(capital, INR)], base_currency=INR)
    for contract in by_token.values():
        engine.add_instrument(contract)
    engine.add_data(ticks, sort=False)  # already in event-time order
    strategy = EmaCross()
    engine.add_strategy(strategy)
    load_seconds = time.perf_counter() - t0
    watch = Stopwatch()
    engine.run()
    result = {"ticks": strategy.ticks, **watch.read(), "load_seconds": load_seconds, "orders": strategy.orders,
              "version": importlib.metadata.version("nautilus_trader")}
    engine.dispose()
    return result


# -- backtrader -------------------------------------------------------------------------------------------------------
def run_backtrader(data: Path, rows: dict[str, list[Any]], options: Sequence[OptionLike], spot_token: int, lot: int,
                   capital: float) -> dict[str, Any]:
    import backtrader as bt  # noqa: PLC0415

    loaded = [0]

    class ListFeed(bt.feed.DataBase):  # type: ignore[misc]
        """One bar per row (open = high = low = close = last), from preloaded Python lists."""

        def __init__(self, stamps: list[float], prices: list[float]) -> None:
            super().__init__()
            self._stamps = stamps
            self._prices = prices
            self._i = 0

        def start(self) -> None:
            super().start()
            self._i = 0

        def _load(self) -> bool:
            i = self._i
            if i >= len(self._stamps):
                return False
            self._i = i + 1
            loaded[0] += 1
            lines = self.lines
            price = self._prices[i]
            lines.datetime[0] = self._stamps[i]
            lines.open[0] = lines.high[0] = lines.low[0] = lines.close[0] = price
            lines.volume[0] = 0.0
            lines.openinterest[0] = 0.0
            return True

    t0 = time.perf_counter()
    stamps: dict[int, list[float]] = {}
    prices: dict[int, list[float]] = {}
    num_cache: dict[int, float] = {}
    for ts, token, last in zip(rows["ts"], rows["token"], rows["last"], strict=True):
        stamp = num_cache.get(ts)
        if stamp is None:
            stamp = num_cache[ts] = bt.date2num(datetime.fromtimestamp(ts / 1e9, tz=UTC).replace(tzinfo=None))
        stamps.setdefault(token, []).append(stamp)
        prices.setdefault(token, []).append(last)
    by_strike: dict[tuple[int, str], Any] = {}
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(capital)
    for option in options:
        feed = ListFeed(stamps[option.token], prices[option.token])
        feed._name = option.symbol
        feed.p.timeframe, feed.p.compression = bt.TimeFrame.Seconds, 1
        cerebro.adddata(feed, name=option.symbol)
    index_feed = ListFeed(stamps[spot_token], prices[spot_token])
    index_feed.p.timeframe, index_feed.p.compression = bt.TimeFrame.Seconds, 1
    cerebro.adddata(index_feed, name="NIFTY50")
    cerebro.resampledata(index_feed, timeframe=bt.TimeFrame.Minutes, compression=1, name="NIFTY50-1m")
    load_seconds = time.perf_counter() - t0
    orders = [0]

    class EmaCross(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.index = self.getdatabyname("NIFTY50")
            self.bars = self.getdatabyname("NIFTY50-1m")
            self.cross = bt.ind.CrossOver(bt.ind.EMA(self.bars, period=9), bt.ind.EMA(self.bars, period=21))
            for option in options:
                by_strike[(option.strike, option.kind)] = self.getdatabyname(option.symbol)
            self.seen_bars = 0
            self.holding: Any = None

        def next(self) -> None:
            if len(self.bars) == self.seen_bars:
                return
            self.seen_bars = len(self.bars)
            cross = self.cross[0]
            if not cross:
                return
            if self.holding is not None:
                self.sell(data=self.holding, size=lot)
                orders[0] += 1
            self.holding = _atm(self.index.close[0], "CE" if cross > 0 else "PE", by_strike)
            self.buy(data=self.holding, size=lot)
            orders[0] += 1

    cerebro.addstrategy(EmaCross)
    watch = Stopwatch()
    cerebro.run(runonce=False)
    return {"ticks": loaded[0], **watch.read(), "load_seconds": load_seconds, "orders": orders[0],
            "version": importlib.metadata.version("backtrader")}
