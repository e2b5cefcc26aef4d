"""Helpers shared by the test modules (imported as ``helpers``: pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import orjson
import structlog

from trader.adapters.kite.rest import checksum
from trader.adapters.ports import (
    Broker,
    BrokerBook,
    BrokerOrder,
    BrokerPosition,
    BrokerTrade,
    BrokerUnavailable,
    MarginView,
    OrderRejected,
)
from trader.cli import main as cli_main
from trader.clock import Clock, SimClock
from trader.config import Settings, load_settings
from trader.events import OrderIntent, OrderRequest, OrderStatus, OrderUpdate, Side, Tick
from trader.logging import configure_logging
from trader.market.instruments import OptionContract, OptionType
from trader.risk.margin import short_option_margin
from trader.sim import ExchangeSimulator
from trader.sim.fyers import FyersFace

# Real Kite sample data copied into the repo with its licence note (tests/fixtures/kite/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kite"

# Fri 20 Nov 2026 10:05 IST: a whole second inside a regular session.
T0 = 1_795_151_700 * 1_000_000_000


async def wait_for(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    """Poll state that lives in another task or process (a server's, a client's); fail after ``within_s``."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - no event to wait on: the state belongs to the code under test
            await asyncio.sleep(0.01)


def atm(sim: ExchangeSimulator, option_type: OptionType = OptionType.CE) -> OptionContract:
    """The simulator's nearest-expiry NIFTY option at the strike nearest spot."""
    expiry = sim.instruments.expiries("NIFTY")[0]
    contract = sim.instruments.nearest_strike("NIFTY", expiry, round(sim.market.spot * 100), option_type)
    assert contract is not None
    return contract


class FakeBroker:
    """The whole ``Broker`` port in memory, for tests that need a broker but not a venue.

    Orders are accepted and rest OPEN (nothing fills them); a cancel ends an open order and publishes the update at
    once, so a ``resync`` never finds missed progress. Funds (``available``, ``used``) and positions (``held``) are what
    the test sets; ``margins_down`` makes the funds and position calls fail like a timed-out endpoint. Subclasses
    script the failures of one call by overriding it.
    """

    def __init__(self, clock: Clock, *, wants_ticks: bool = False, available: int = 10_000_000) -> None:
        self.clock = clock
        self._wants_ticks = wants_ticks
        self.publish: Callable[[object], None] | None = None
        self.orders: list[BrokerOrder] = []
        self.ticks: list[Tick] = []
        self.cancelled: list[str] = []
        self.available = available  # paise free for new orders
        self.used = 0  # paise blocked
        self.held: dict[int, int] = {}  # instrument token -> net quantity
        self.margins_down = False
        self.resyncs = 0
        self.trades: list[BrokerTrade] = []
        self.adopted: list[tuple[str, str, int, int]] = []  # (tag, order id, filled, filled value)
        self.book_down = False
        self.positions_detail: dict[int, tuple[int, int, int]] = {}  # token → (net, overnight, average): wins

    # -- Broker port
    def attach(self, publish: Callable[[object], None]) -> None:
        self.publish = publish

    @property
    def wants_ticks(self) -> bool:
        return self._wants_ticks

    def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)

    async def place_order(self, request: OrderRequest) -> str:
        order_id = f"ORD{len(self.orders) + 1}"
        self.orders.append(BrokerOrder(order_id=order_id, tag=request.tag, status=OrderStatus.OPEN,
                                       quantity=request.intent.quantity, filled_quantity=0, average_price=0))
        return order_id

    async def cancel_order(self, order_id: str) -> None:
        index = next((i for i, o in enumerate(self.orders) if o.order_id == order_id), None)
        if index is None or self.orders[index].status.is_terminal:
            raise OrderRejected(f"order {order_id} is not open")
        order = self.orders[index] = dataclasses.replace(self.orders[index], status=OrderStatus.CANCELLED)
        self.cancelled.append(order_id)
        if self.publish is not None:
            self.publish(OrderUpdate(ts_ns=self.clock.now_ns(), intent_id=order.tag, order_id=order_id,
                                     status=OrderStatus.CANCELLED, filled_quantity=order.filled_quantity))

    async def find_order_by_tag(self, tag: str) -> BrokerOrder | None:
        matching = [o for o in self.orders if o.tag == tag]
        return matching[-1] if matching else None

    async def open_orders(self) -> list[BrokerOrder]:
        return [o for o in self.orders if not o.status.is_terminal]

    async def margins(self) -> MarginView:
        self._fail_if_down()
        return MarginView(available=self.available, used=self.used)

    async def resync(self) -> None:
        self.resyncs += 1  # every update was published as it happened: nothing to read back

    async def positions(self) -> dict[int, int]:
        self._fail_if_down()
        return dict(self.held)

    async def order_margin(self, intent: OrderIntent) -> int:
        """A buy blocks its premium, a short sale a modelled SPAN + exposure; the part that reduces ``held``, 0."""
        self._fail_if_down()
        held = self.held.get(intent.contract.instrument_token, 0)
        opening = intent.quantity if held * intent.side.sign >= 0 else max(intent.quantity - abs(held), 0)
        if intent.side is Side.BUY:
            return opening * (intent.limit_price or intent.expected_price)
        return short_option_margin(intent.contract.strike, opening)

    async def book(self) -> BrokerBook:
        if self.book_down:
            raise BrokerUnavailable("the order book endpoint timed out")
        rows = {token: BrokerPosition(instrument_token=token, tradingsymbol=str(token), quantity=q)
                for token, q in self.held.items() if q}
        for token, (quantity, overnight, average) in self.positions_detail.items():
            rows[token] = BrokerPosition(instrument_token=token, tradingsymbol=str(token), quantity=quantity,
                                         overnight_quantity=overnight, average_price=average)
        return BrokerBook(orders=tuple(self.orders), trades=tuple(self.trades), positions=tuple(rows.values()))

    def adopt(self, request: OrderRequest, order_id: str, filled: int, filled_value: int) -> None:
        self.adopted.append((request.tag, order_id, filled, filled_value))

    # -- test helpers
    def orders_for(self, tag: str) -> list[BrokerOrder]:
        return [o for o in self.orders if o.tag == tag]

    def _fail_if_down(self) -> None:
        if self.margins_down:
            raise ConnectionError("margins endpoint timed out")


if TYPE_CHECKING:
    _: Broker = FakeBroker(SimClock(T0))  # mypy proves the fake still implements the whole port
@contextlib.contextmanager
def captured_logs(level: str = "INFO") -> Iterator[list[dict[str, Any]]]:
    """The JSON log lines written inside the block, parsed into the yielded list when the block ends."""
    stream = io.StringIO()
    saved = structlog.get_config()
    configure_logging(level, stream)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        structlog.configure(**saved)
        lines.extend(orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip())


async def sim_access_token(base: str, api_key: str = "sim_api_key", api_secret: str = "sim_api_secret") -> str:
    """Log in to the exchange simulator at ``base`` the way `trader login` does; returns the access token."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/connect/login", params={"api_key": api_key, "v": "3"},
                            allow_redirects=False) as response:
            request_token = response.headers["Location"].split("request_token=")[1].split("&")[0]
        form = {"api_key": api_key, "request_token": request_token,
                "checksum": checksum(api_key, request_token, api_secret)}
        async with http.post(f"{base}/session/token", data=form, headers={"X-Kite-Version": "3"}) as response:
            return str((await response.json())["data"]["access_token"])


async def fyers_sim_access_token(face: FyersFace) -> str:
    """Log in to the simulator's Fyers face as `trader login --venue fyers` does: the auth-code redirect, then
    ``/validate-authcode`` with ``appIdHash`` = sha256("app_id:secret"); returns the access token."""
    api = face.urls()["API_ROOT"]
    async with aiohttp.ClientSession() as http:
        params = {"client_id": face.app_id, "redirect_uri": face.redirect_uri, "response_type": "code", "state": "t"}
        async with http.get(f"{api}/generate-authcode", params=params, allow_redirects=False) as response:
            code = parse_qs(urlparse(response.headers["Location"]).query)["auth_code"][0]
        app_hash = hashlib.sha256(f"{face.app_id}:{face.secret_key}".encode()).hexdigest()
        body = {"grant_type": "authorization_code", "appIdHash": app_hash, "code": code}
        async with http.post(f"{api}/validate-authcode", json=body) as response:
            return str((await response.json())["access_token"])


async def fyers_sim_settings(face: FyersFace) -> dict[str, Any]:
    """The settings that point a daemon at the simulator's Fyers face (logged in), as `trader sim --venue fyers`
    prints them."""
    urls = face.urls()
    return {"venue": "fyers", "fyers": {
        "app_id": face.app_id, "access_token": await fyers_sim_access_token(face), "api_root": urls["API_ROOT"],
        "data_root": urls["DATA_ROOT"], "data_ws_url": urls["DATA_WS_URL"], "order_ws_url": urls["ORDER_WS_URL"],
        "symbols_root": urls["SYMBOLS_ROOT"], "timeout_seconds": 2.0}}


async def sim_get(base: str, token: str, path: str, api_key: str = "sim_api_key") -> Any:
    """``GET path`` on the simulator's Kite REST API as the logged-in user; the ``data`` of the answer."""
    headers = {"X-Kite-Version": "3", "Authorization": f"token {api_key}:{token}"}
    async with aiohttp.ClientSession() as http, http.get(f"{base}{path}", headers=headers) as response:
        response.raise_for_status()
        return (await response.json())["data"]


def live_sim_settings(base: str, ws_url: str, token: str, data_dir: Path) -> Settings:
    """Live mode with auto-execution against a simulator: short bars and no cutoff, so a few simulated minutes
    give entries and exits."""
    return load_settings({
        "mode": "live", "live_confirm": "yes", "auto_execution": True, "data_dir": str(data_dir),
        "kite": {"api_key": "sim_api_key", "access_token": token},
        "kite_api_root": base, "kite_ws_root": ws_url, "kite_timeout_seconds": 2.0,
        "strategy": {"bar_seconds": 10, "confidence_cutoff": 0, "first_entry_time": "09:15:00"},
        "risk": {"no_entry_before": "09:15:00", "max_daily_loss_pct": 0.5},
    })


class ManualClock:
    """Time moves only when the test moves it, so a sleeper really waits while others queue up."""

    def __init__(self, start_ns: int) -> None:
        self.t = start_ns
        self._moved = asyncio.Event()

    def now_ns(self) -> int:
        return self.t

    async def sleep_until(self, ts_ns: int) -> None:
        while self.t < ts_ns:
            await self._moved.wait()

    @property
    def paced(self) -> bool:
        return True

    def move_to(self, ts_ns: int) -> None:
        self.t = ts_ns
        self._moved.set()
        self._moved = asyncio.Event()


# -- a daemon subprocess driven through the operator CLI (tests/test_operator_e2e.py, tests/test_live_control_e2e.py)

CONTROL_TOKEN = "e2e-control-token-0123456789"  # the tests' TRADER_CONTROL__TOKEN, daemon and CLI alike
DAEMON_WAIT_S = 90.0  # generous: a loaded 2-core machine runs a market slower than its nominal speed


@dataclasses.dataclass
class Daemon:
    """A ``python -m trader run`` subprocess: its JSON log lines (read by a thread) and its control API's URL."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    stderr_path: Path
    lines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    url: str = ""
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            self.lines.append(line)
            if line.get("event") == "control_api_listening":
                self.url = str(line["url"])
                self.ready.set()
        self.ready.set()  # ended without listening: the test fails on the missing URL, with the log

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("event") == name]

    def tail(self) -> str:
        return "\n".join(str(line) for line in self.lines[-8:]) + "\n" + self.stderr_path.read_text()[-2000:]


def daemon_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """No TRADER_* of the caller's; a free control port, the tests' token, and a strategy tuned to signal often
    (5 s bars, EMA 2/4, no confidence cutoff) with room for many positions."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADER_")}
    env.update({
        "TRADER_DATA_DIR": str(data_dir),
        "TRADER_CONTROL__PORT": "0",
        "TRADER_CONTROL__TOKEN": CONTROL_TOKEN,
        "TRADER_CONTROL__APPROVAL_EXPIRY_SECONDS": "900",  # 15 s of wall time at 60x
        "TRADER_STRATEGY__BAR_SECONDS": "5",
        "TRADER_STRATEGY__FAST": "2",
        "TRADER_STRATEGY__SLOW": "4",
        "TRADER_STRATEGY__CONFIRM_BARS": "1",
        "TRADER_STRATEGY__CONFIDENCE_CUTOFF": "0",
        "TRADER_RISK__INITIAL_CAPITAL": "1000000",
        "TRADER_RISK__MAX_POSITIONS_PER_SYMBOL": "50",
        "TRADER_RISK__MAX_TOTAL_POSITIONS": "100",
        "TRADER_HEARTBEAT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


@contextlib.contextmanager
def running_daemon(data_dir: Path, args: Sequence[str], env: dict[str, str]) -> Iterator[Daemon]:
    """``python -m trader run ARGS`` on ``data_dir`` until the block ends (SIGINT, then a clean exit within 30 s);
    yields once its control API listens. Its stderr goes to a file beside the data dir (a pipe nobody reads could
    fill up and stall the daemon)."""
    data_dir.mkdir(exist_ok=True)
    runs = len(list(data_dir.parent.glob(f"{data_dir.name}-*.stderr")))
    stderr_path = data_dir.parent / f"{data_dir.name}-{runs + 1}.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "trader", "run", *args],
                                stdout=subprocess.PIPE, stderr=stderr, env=env)
    daemon = Daemon(proc, data_dir, stderr_path)
    reader = threading.Thread(target=daemon.read, daemon=True)
    reader.start()
    try:
        assert daemon.ready.wait(DAEMON_WAIT_S) and daemon.url, f"no control_api_listening line: {daemon.tail()}"
        yield daemon
    except BaseException:
        # What the daemon did, for the failure report (pytest shows a failed test's stderr).
        story = [line for line in list(daemon.lines) if line.get("event") not in ("heartbeat", "control_request")]
        print("the daemon's last log lines:", *(orjson.dumps(line).decode()[:400] for line in story[-60:]),
              sep="\n", file=sys.stderr)
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)


def cli(daemon: Daemon, *args: str) -> tuple[int, Any]:
    """`trader <args> --url <daemon> --json`, in process: (exit code, the JSON document it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = cli_main([*args, "--url", daemon.url, "--json"])
        except SystemExit as exc:  # argparse's usage errors, as the shell would see them
            code = int(exc.code or 0)
    text = out.getvalue().strip()
    return code, orjson.loads(text) if text else None


def ok(daemon: Daemon, *args: str) -> Any:
    code, doc = cli(daemon, *args)
    assert code == 0, (args, doc)
    return doc


def wait_until(what: str, probe: Callable[[], Any], timeout_s: float = DAEMON_WAIT_S) -> Any:
    """Poll ``probe`` (a CLI read, a look at another process) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)  # a poll interval, not a synchronisation: the condition is what ends the wait
    raise AssertionError(f"timed out waiting for {what}")


def open_positions(daemon: Daemon) -> list[dict[str, Any]]:
    return [p for p in ok(daemon, "positions")["positions"] if p["quantity"] != 0]


def order_by_id(daemon: Daemon, intent_id: str) -> dict[str, Any] | None:
    return next((o for o in ok(daemon, "orders")["orders"] if o["intent_id"] == intent_id), None)


def next_pending(daemon: Daemon, seen: set[str]) -> dict[str, Any]:
    """The next semi-live signal waiting for approval that is not in ``seen`` (then added to it)."""
    def probe() -> dict[str, Any] | None:
        return next((a for a in ok(daemon, "signals")["pending"] if a["intent_id"] not in seen), None)
    approval: dict[str, Any] = wait_until("a pending semi-live signal", probe)
    seen.add(approval["intent_id"])
    return approval
