"""Phase 3 of the seed, as a trader runs it: `trader sim` (the exchange simulator, with its Kite face or its Fyers
face) in one process, `trader login` against it, `trader run` in live mode in another process, and the operator's
commands through the CLI while the daemon runs: status, a manual order (refused without --confirm, then filled at the
simulator), positions with P&L, the cancel of a resting order, a refusal by the broker, a semi-live approval,
halt/resume, flatten, risk and report. Then a restart on the same data dir with a manual position and a resting order
open: the position is restored and still managed, the day's P&L and orders are kept, and the order is cancelled and
the position flattened.

What the daemon says is checked against the simulator's own book through the official `kiteconnect` client (with
Fyers too: the Kite face of the same exchange core reads the one book, whatever wire the daemon speaks). The
simulated session runs at 60x from Wed 25 Nov 2026 09:25 IST; every wait is on a condition, never a fixed sleep."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson
import pytest
import requests
from kiteconnect import KiteConnect

from trader.cli import main

import helpers
from helpers import CONTROL_TOKEN, Daemon, cli, daemon_env, next_pending, ok, open_positions, order_by_id, wait_until

SIM_START = "2026-11-25T09:25"  # a Wednesday session; the simulator's clock runs from here
SIM_SPEED = "60"
API_KEY, API_SECRET = "sim_api_key", "sim_api_secret"  # `trader sim`'s documented local-use defaults
FYERS_APP_ID, FYERS_SECRET = "SIMAPP-100", "sim_fyers_secret"  # and `trader sim --venue fyers`'s
CAPITAL_INR = 1_000_000.0  # helpers.daemon_env's TRADER_RISK__INITIAL_CAPITAL


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADER_CONTROL__TOKEN", CONTROL_TOKEN)  # what the CLI in this process reads
    monkeypatch.setenv("COLUMNS", "200")  # the tables the CLI prints without --json: wide enough for every column


def listening(log: Path, event: str) -> dict[str, Any] | None:
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            line = orjson.loads(raw)
            if isinstance(line, dict) and line.get("event") == event:
                return line
    return None


@contextlib.contextmanager
def trader_sim(tmp_path: Path, venue: str) -> Iterator[dict[str, Any]]:
    """`trader sim --port 0 [--venue fyers]` in a subprocess, as a trader starts it; yields its listening line."""
    log = tmp_path / "sim.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRADER_")}
    event = "sim_fyers_listening" if venue == "fyers" else "sim_listening"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "trader", "sim", "--port", "0", "--start", SIM_START,
                                 "--speed", SIM_SPEED, "--venue", venue], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    try:
        wait_until("trader sim to listen", lambda: proc.poll() is not None or listening(log, event))
        line = listening(log, event)
        assert line is not None, f"trader sim exited {proc.returncode}: {log.read_text()}"
        yield line
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]


def request_token(base: str) -> str:
    """What the browser login gives: the redirect URL carrying the day's request token."""
    answer = requests.get(f"{base}/connect/login", params={"api_key": API_KEY, "v": "3"}, allow_redirects=False,
                          timeout=10)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def kite_client(base: str) -> KiteConnect:
    """The official client, logged in to the simulator on its own session: the test's view of the exchange."""
    kite = KiteConnect(API_KEY, root=base, timeout=10)
    token = parse_qs(urlparse(request_token(base)).query)["request_token"][0]
    kite.generate_session(token, API_SECRET)
    return kite


def sim_quantity(kite: KiteConnect, tradingsymbol: str) -> int:
    """The net quantity the simulator's broker holds in ``tradingsymbol`` for the day."""
    return sum(int(row["quantity"]) for row in kite.positions()["net"] if row["tradingsymbol"] == tradingsymbol)


def sim_order(kite: KiteConnect, tag: str) -> dict[str, Any] | None:
    """The simulator's order placed under ``tag`` (our intent id), if any."""
    found = [order for order in kite.orders() if order.get("tag") == tag]
    assert len(found) <= 1, f"{len(found)} orders at the broker under tag {tag}"
    return found[0] if found else None


def sim_status(kite: KiteConnect, tag: str) -> str:
    order = sim_order(kite, tag)
    return str(order["status"]) if order is not None else ""


def resting_limit(preview: dict[str, Any]) -> float:
    """A BUY limit 25 % below the quote, on the tick: it rests (the premium would have to fall a quarter to fill it)
    and stays inside the exchange's price band (±40 % above ₹50, else ±₹20) even if the premium rises a good deal
    between the dry run and the order, as it may on a loaded machine while the simulated market runs on."""
    return float(round(preview["resolved"]["expected_price_inr"] * 0.75 * 20) / 20)


def resting_at_sim(kite: KiteConnect, tag: str) -> bool:
    """The order rests at the simulator; a refusal ends the wait at once, with the simulator's reason."""
    order = sim_order(kite, tag)
    assert order is None or order["status"] != "REJECTED", order
    return order is not None and order["status"] == "OPEN"


def order_status(daemon: Daemon, intent_id: str) -> str:
    order = order_by_id(daemon, intent_id)
    return str(order["status"]) if order is not None else ""


def completed_at_sim(kite: KiteConnect, tag: str) -> dict[str, Any] | None:
    order = sim_order(kite, tag)
    return order if order is not None and order["status"] == "COMPLETE" else None


def sim_flat(kite: KiteConnect) -> bool:
    return all(int(row["quantity"]) == 0 for row in kite.positions()["net"])


def fyers_auth_code_url(api_root: str) -> str:
    """What the Fyers browser login gives: the redirect URL carrying the day's auth code."""
    answer = requests.get(f"{api_root}/generate-authcode", allow_redirects=False, timeout=10, params={
        "client_id": FYERS_APP_ID, "redirect_uri": "https://127.0.0.1/", "response_type": "code", "state": "e2e"})
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def venue_env(venue: str, sim: dict[str, Any]) -> dict[str, str]:
    """The daemon's (and `trader login`'s) settings for the simulator's face of ``venue``."""
    if venue == "fyers":
        return {"TRADER_VENUE": "fyers", "TRADER_FYERS__APP_ID": FYERS_APP_ID,
                "TRADER_FYERS__SECRET_KEY": FYERS_SECRET, "TRADER_FYERS__API_ROOT": str(sim["api_root"]),
                "TRADER_FYERS__DATA_ROOT": str(sim["data_root"]),
                "TRADER_FYERS__DATA_WS_URL": str(sim["data_ws_url"]),
                "TRADER_FYERS__ORDER_WS_URL": str(sim["order_ws_url"]),
                "TRADER_FYERS__SYMBOLS_ROOT": str(sim["symbols_root"]), "TRADER_FYERS__TIMEOUT_SECONDS": "3"}
    return {"TRADER_KITE__API_KEY": API_KEY, "TRADER_KITE__API_SECRET": API_SECRET,
            "TRADER_KITE_API_ROOT": str(sim["rest_url"]), "TRADER_KITE_WS_ROOT": str(sim["ws_url"]),
            "TRADER_KITE_TIMEOUT_SECONDS": "3"}


@pytest.mark.parametrize("venue", ["kite", "fyers"])
def test_phase_3_live_mode_against_trader_sim_driven_by_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 venue: str) -> None:
    data_dir = tmp_path / "data"
    with trader_sim(tmp_path, venue) as sim:
        base = str(sim["kite_rest_url"] if venue == "fyers" else sim["rest_url"])  # the book, through Kite's face
        kite = kite_client(base)
        live = {"TRADER_MODE": "live", "TRADER_LIVE_CONFIRM": "yes", **venue_env(venue, sim),
                # A pending signal waits a simulated hour (a minute of wall time): never expired by a slow machine.
                "TRADER_CONTROL__APPROVAL_EXPIRY_SECONDS": "3600",
                # The adopted keeper's stop far away: the restart below checks it holds the position, not its stop.
                "TRADER_ADOPTED__STOP_LOSS_PCT": "0.9"}
        # `trader login` as the README says: the access token lands in <data_dir>/<venue>_access_token (0600).
        for key, value in {**live, "TRADER_DATA_DIR": str(data_dir)}.items():
            monkeypatch.setenv(key, value)
        data_dir.mkdir()
        redirect = fyers_auth_code_url(str(sim["api_root"])) if venue == "fyers" else request_token(base)
        assert main(["login", "--request-token", redirect]) == 0
        assert (data_dir / f"{venue}_access_token").stat().st_mode & 0o777 == 0o600
        env = daemon_env(data_dir, **live)

        with helpers.running_daemon(data_dir, [], env) as daemon:
            status = ok(daemon, "status")
            assert (status["mode"], status["auto_execution"], status["trading_state"]) == ("live", False, "ACTIVE")
            assert status["broker_reachable"] is True and status["venue_problems"] == {}, status
            # "NIFTY ATM CE" needs the index's price: the API answers before the first tick, and says to wait.
            wait_until("the index to stream", lambda: cli(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1",
                                                          "--dry-run")[0] == 0)
            assert ok(daemon, "status")["feed_age_s"] is not None

            # Live mode: a manual order without --confirm is refused and names what it would place.
            code, refused = cli(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1")
            assert code == 1, refused
            symbol = refused["resolved"]["tradingsymbol"]
            assert symbol.startswith("NIFTY") and symbol.endswith("CE")
            assert symbol in refused["error"]["message"] and "--confirm" in refused["error"]["message"], refused
            assert kite.orders() == []

            # With --confirm it goes through the gate to the simulator and fills there.
            manual_id = place(daemon, kite, "BUY", "NIFTY", "ATM", "CE")
            held = wait_until("the manual position", lambda: [p for p in open_positions(daemon) if p["quantity"] > 0])
            # What a manual order opens, the adopted-position keeper manages (protective stop, time exit).
            assert held[0]["held_by"] == "adopted" and held[0]["lots"] == 1, held
            assert sim_quantity(kite, held[0]["tradingsymbol"]) == held[0]["quantity"]
            assert held[0]["average_price_inr"] > 0 and held[0]["last_price_inr"] > 0
            book = ok(daemon, "positions")
            assert {"realized_inr", "unrealized_inr", "charges_inr", "day_pnl_inr"} <= set(book)
            assert book["charges_inr"] > 0, book  # a live fill pays brokerage and taxes
            assert (order_by_id(daemon, manual_id) or {}).get("strategy") == "manual"
            mine = next(row for row in kite.positions()["net"] if row["tradingsymbol"] == held[0]["tradingsymbol"])
            assert held[0]["average_price_inr"] == pytest.approx(float(mine["average_price"]))
            table = human(daemon, "positions")  # what an operator reads without --json
            assert held[0]["tradingsymbol"] in table and "adopted" in table, table

            # A LIMIT order resting at the broker, cancelled from the CLI: cancelled at the simulator too.
            preview = ok(daemon, "order", "BUY", "NIFTY", "ATM", "PE", "--lots", "1", "--dry-run")
            below = resting_limit(preview)
            resting = ok(daemon, "order", "BUY", "NIFTY", "ATM", "PE", "--lots", "1", "--limit", f"{below:.2f}",
                         "--confirm")["order"]["intent_id"]
            wait_until("the limit order to rest at the simulator",
                       lambda: resting_at_sim(kite, resting))
            wait_until("the limit order to rest", lambda: order_status(daemon, resting) == "OPEN")
            assert ok(daemon, "cancel", resting)["ok"] is True
            wait_until("the cancel at the simulator", lambda: sim_status(kite, resting) == "CANCELLED")
            wait_until("the cancel", lambda: order_status(daemon, resting) == "CANCELLED")

            # The broker's own refusal reaches the operator: a limit price outside the exchange's band.
            far = ok(daemon, "order", "BUY", "NIFTY", "ATM", "PE", "--lots", "1", "--limit", "0.05", "--confirm")
            refused_at_broker = wait_until(
                "the broker's rejection",
                lambda: (o := order_by_id(daemon, far["order"]["intent_id"])) and o["status"] == "REJECTED" and o)
            assert "price band" in refused_at_broker["reason"], refused_at_broker

            # Semi-live: a signal waits for the operator; approved, it becomes an order at the simulator.
            seen: set[str] = set()
            approved = next_pending(daemon, seen)["intent_id"]
            answer = ok(daemon, "approve", approved)
            assert answer["approval"]["status"] == "APPROVED", answer
            wait_until("the approved entry to fill at the simulator", lambda: completed_at_sim(kite, approved))
            wait_until("the approved entry's fill in the daemon",
                       lambda: order_status(daemon, approved) == "COMPLETE")

            # HALT refuses a manual order naming the check; RESUME lets trading go on.
            assert ok(daemon, "halt", "--reason", "phase 3 test")["trading_state"] == "HALTED"
            code, refused = cli(daemon, "order", "BUY", "NIFTY", "ATM", "PE", "--lots", "1", "--confirm")
            assert code == 1 and refused["error"]["check"] == "state", refused
            assert sim_order(kite, refused["order"]["intent_id"]) is None
            assert ok(daemon, "resume")["trading_state"] == "ACTIVE"

            # FLATTEN closes everything at the simulator.
            flattened = ok(daemon, "flatten")
            assert flattened["exits"] >= 1, flattened
            wait_until("flat at the simulator", lambda: sim_flat(kite))
            wait_until("flat in the daemon", lambda: open_positions(daemon) == [])

            risk = ok(daemon, "risk")
            assert "daily_pnl_inr" in risk and risk["limits"]["daily_loss"]["unit"] == "INR"
            report = ok(daemon, "report")
            assert report["trades"] >= 1 and report["net_pnl_inr"] != 0, report

            # A manual position left open over a restart.
            kept_id = place(daemon, kite, "BUY", "NIFTY", "OTM2", "PE")
            kept = wait_until("the manual position", lambda: open_positions(daemon))[0]
            assert (kept["option_type"], kept["lots"], kept["held_by"]) == ("PE", 1, "adopted"), kept
            # ... and a LIMIT order resting at the broker.
            preview = ok(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1", "--dry-run")
            below = resting_limit(preview)
            waiting = ok(daemon, "order", "BUY", "NIFTY", "ATM", "CE", "--lots", "1", "--limit", f"{below:.2f}",
                         "--confirm")["order"]["intent_id"]
            wait_until("the second limit order to rest at the simulator",
                       lambda: resting_at_sim(kite, waiting))
            before = ok(daemon, "positions")
        assert daemon.proc.returncode == 0, daemon.tail()
        assert sim_quantity(kite, kept["tradingsymbol"]) == kept["quantity"]

        with helpers.running_daemon(data_dir, [], env) as again:
            status = ok(again, "status")
            assert (status["mode"], status["trading_state"]) == ("live", "ACTIVE"), status
            restored = open_positions(again)
            assert [(p["tradingsymbol"], p["quantity"], p["held_by"]) for p in restored] == \
                [(kept["tradingsymbol"], kept["quantity"], "adopted")], restored
            after = ok(again, "positions")
            # The day's P&L survives the restart: what was realized and paid is the same.
            assert (after["realized_inr"], after["charges_inr"]) == (before["realized_inr"], before["charges_inr"])
            assert ok(again, "report")["trades"] == report["trades"]
            # All of it happened today, on 10 lakh: the day's P&L is the equity less the capital, as before the
            # restart; the risk gate's daily window (the daily loss limit) still starts at the day's open.
            status = ok(again, "status")
            assert status["day_pnl_inr"] == pytest.approx(status["equity_inr"] - CAPITAL_INR, abs=0.01), status
            risk = ok(again, "risk")
            assert risk["daily_pnl_inr"] == pytest.approx(risk["monthly_pnl_inr"], abs=0.01), risk
            assert risk["daily_pnl_inr"] == pytest.approx(risk["equity_inr"] - CAPITAL_INR, abs=0.01), risk
            # `trader orders` still lists the day's orders, the one resting since the last run among them, which is
            # still the operator's to cancel by the id they were given.
            listed = {o["intent_id"]: o for o in ok(again, "orders")["orders"]}
            assert {manual_id, resting, approved, kept_id, waiting} <= set(listed), sorted(listed)
            assert listed[kept_id]["status"] == "COMPLETE" and listed[kept_id]["fills"], listed[kept_id]
            assert (listed[waiting]["status"], listed[resting]["status"]) == ("OPEN", "CANCELLED")
            assert ok(again, "cancel", waiting)["ok"] is True
            wait_until("the cancel at the simulator", lambda: sim_status(kite, waiting) == "CANCELLED")
            wait_until("the cancel", lambda: order_status(again, waiting) == "CANCELLED")
            assert ok(again, "flatten", "NIFTY")["exits"] == 1
            wait_until("the restored position flat at the simulator", lambda: sim_flat(kite))
            wait_until("flat in the daemon", lambda: open_positions(again) == [])
        assert again.proc.returncode == 0, again.tail()
    assert not any(CONTROL_TOKEN in str(line) for line in daemon.lines + again.lines), "the token reached the log"


def human(daemon: Daemon, *args: str) -> str:
    """`trader <args> --url <daemon>` without --json: the table an operator reads."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*args, "--url", daemon.url]) == 0
    return out.getvalue()


def place(daemon: Daemon, kite: KiteConnect, side: str, *instrument: str) -> str:
    """A confirmed one-lot manual MARKET order; returns its intent id once it is complete at the simulator."""
    placed = ok(daemon, "order", side, *instrument, "--lots", "1", "--confirm")
    intent_id = str(placed["order"]["intent_id"])
    order = wait_until(f"{intent_id} to fill at the simulator", lambda: completed_at_sim(kite, intent_id))
    assert order["tradingsymbol"] == placed["resolved"]["tradingsymbol"]
    assert order["transaction_type"] == side and int(order["filled_quantity"]) == placed["resolved"]["quantity"]
    wait_until(f"{intent_id}'s fill in the daemon",
               lambda: order_status(daemon, intent_id) == "COMPLETE")
    return intent_id

