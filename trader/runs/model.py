"""What a run folder holds (``data_dir/runs/<run id>/``), as typed rows: the one shape the run recorder writes and
the report, ``trader compare`` and ``trader sweep`` read.

Money is integer paise, times are integer ns since the Unix epoch (UTC; IST only when shown). Every row is a plain
frozen dataclass of scalars so a table of them maps 1:1 onto a Parquet schema (``trader/runs/store.py``) and back.

Files of a run folder (``FORMAT_VERSION`` 1):

* ``run.json``      the ``RunManifest`` (written at start with ``status="running"``, rewritten at stop);
* ``events.jsonl``  append-only while the run lives (one JSON object per line, ``"kind"`` + the row's fields), so a
                    crash loses at most the last unflushed batch; the tables below are built from it at stop;
* ``signals.parquet``, ``orders.parquet``, ``fills.parquet``, ``equity.parquet``, ``trades.parquet``: one table per
                    row type below, written at stop;
* ``summary.json``  the metrics (``trader.report.metrics.run_metrics``, as ``jsonable``) and the go-live checklist.

A reader prefers the Parquet tables and falls back to ``events.jsonl`` for a run that did not stop cleanly
(``status`` stays ``"running"``; the report says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from trader.events import Side
from trader.report.fill_metrics import FillRecord

FORMAT_VERSION = 1
MANIFEST = "run.json"
EVENTS = "events.jsonl"
SUMMARY = "summary.json"
SIGNALS = "signals.parquet"
ORDERS = "orders.parquet"
FILLS = "fills.parquet"
EQUITY = "equity.parquet"
TRADES = "trades.parquet"

RunMode = Literal["backtest", "paper", "live"]
RunStatus = Literal["running", "complete", "failed"]
DataKind = Literal["synthetic", "ticks", "candles", "index_only", "kite", "fyers", "simulator"]


@dataclass(frozen=True, slots=True)
class DataSource:
    """Where the run's market data came from. ``modelled_options``: option prices were computed from the index with
    the built-in chain model (index-only history), not observed; ``model_note`` states the volatility assumption
    and is shown wherever the run's results are."""

    kind: DataKind
    path: str = ""  # the data file or directory (replay), "" otherwise
    instruments: str = ""  # the instrument dump(s) used, "" when derived for the built-in market
    modelled_options: bool = False
    model_note: str = ""
    bar_path: str = ""  # candles: the documented intrabar path, e.g. "O-H-L-C if close >= open else O-L-H-C"


@dataclass(frozen=True, slots=True)
class StrategyRun:
    strategy_id: str
    name: str  # the registry name (trader/strategies/registry.py)
    params: dict[str, Any] = field(default_factory=dict)  # its validated Params, as JSON data


@dataclass(frozen=True, slots=True)
class RunManifest:
    run_id: str
    mode: RunMode
    status: RunStatus
    initial_capital: int  # paise
    started_ns: int  # event time of the run's start (SimClock in backtest)
    ended_ns: int = 0  # event time of the stop; 0 while running
    wall_started_ns: int = 0  # the machine's clock at start (provenance only, never used in a metric)
    wall_ended_ns: int = 0
    venue: str = ""  # "synthetic", "replay", "kite", ... (the MarketData / broker pair)
    fill_model: str = ""  # e.g. "paper: cross the spread, latency 0 ms" — what decides a simulated fill
    strategies: tuple[StrategyRun, ...] = ()
    underlyings: tuple[str, ...] = ()
    data: DataSource = DataSource("synthetic")
    settings: dict[str, Any] = field(default_factory=dict)  # the effective settings, secrets removed
    code_version: str = ""  # trader.__version__ (+ git describe when known)
    stop_reason: str = ""
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class SignalRow:
    ts_ns: int
    signal_id: str
    strategy_id: str
    underlying: str
    direction: str  # Direction value
    confidence: float
    reason: str
    tick_id: int = 0


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One intent and what became of it (the last ``OrderUpdate`` seen, or the risk gate's refusal)."""

    ts_ns: int  # the intent's time (event time of the tick that caused it)
    intent_id: str
    strategy_id: str
    signal_id: str
    purpose: str  # IntentPurpose value
    instrument_token: int
    tradingsymbol: str
    exchange: str
    side: Side
    quantity: int
    order_type: str  # OrderType value
    expected_price: int
    limit_price: int
    stop_loss_price: int
    reason: str  # the intent's reason
    order_id: str = ""  # "" when no order reached the broker
    status: str = ""  # final OrderStatus value ("REJECTED" with ``check`` set = refused by the risk gate)
    status_ts_ns: int = 0  # when the final status was seen
    filled_quantity: int = 0
    average_price: int = 0
    check: str = ""  # the risk check that refused it
    status_reason: str = ""  # the broker's or the gate's words


@dataclass(frozen=True, slots=True)
class FillRow:
    """A ``Fill`` as the run keeps it; ``record()`` is the shape the metrics take."""

    ts_ns: int
    fill_id: str
    intent_id: str
    order_id: str
    strategy_id: str
    purpose: str
    instrument_token: int
    tradingsymbol: str
    exchange: str
    side: Side
    quantity: int
    price: int
    expected_price: int
    charges: int
    order_type: str

    def record(self) -> FillRecord:
        return FillRecord(ts_ns=self.ts_ns, order_id=self.order_id, instrument_token=self.instrument_token,
                          exchange=self.exchange, side=self.side, quantity=self.quantity, price=self.price,
                          expected_price=self.expected_price, charges=self.charges, order_type=self.order_type)


@dataclass(frozen=True, slots=True)
class EquityRow:
    ts_ns: int
    equity: int
    realized: int
    unrealized: int
    charges: int
    day_pnl: int


@dataclass(frozen=True, slots=True)
class TradeRow:
    """A round trip on one contract, flat → flat (as ``trader.book.PositionBook`` closes them)."""

    strategy_id: str
    signal_id: str  # the entry intent's signal, "" for a manual or adopted position
    instrument_token: int
    tradingsymbol: str
    direction: str  # "long" or "short"
    quantity: int  # the largest absolute position held during the trade
    entry_ns: int
    exit_ns: int
    entry_price: int  # volume-weighted over the fills that opened or added
    exit_price: int  # volume-weighted over the fills that reduced or closed
    gross: int
    charges: int
    net: int
    exit_reason: str  # the closing intent's reason (stop_loss, target, time_exit, flatten, ...)
    entry_intent_id: str
    exit_intent_id: str


@dataclass(frozen=True, slots=True)
class RunData:
    """A run folder read back whole."""

    manifest: RunManifest
    signals: tuple[SignalRow, ...]
    orders: tuple[OrderRow, ...]
    fills: tuple[FillRow, ...]
    equity: tuple[EquityRow, ...]
    trades: tuple[TradeRow, ...]
    complete: bool  # the Parquet tables were there (a clean stop); False = rebuilt from events.jsonl
    bad_lines: int = 0  # events.jsonl lines that could not be read (a line cut short by a crash), skipped

    @property
    def final_equity(self) -> tuple[int, int] | None:
        """(ts_ns, equity) of the last sample: the account at the end of the run."""
        return (self.equity[-1].ts_ns, self.equity[-1].equity) if self.equity else None
