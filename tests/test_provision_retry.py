"""Issue #8, found by fault injection (item 5): a transient broker error at start-up no longer kills the daemon.

Three 503s on ``/instruments`` or ``/quote`` used to end start-up with exit code 1 and a traceback. Provisioning now
retries with backoff (bounded total waiting), then fails with one line naming what was unreachable, and
``trader run`` exits with code 2 and that line, no traceback.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trader.adapters.kite import provision
from trader.adapters.kite.provision import BrokerUnreachableError, RetryPolicy, provision_market
from trader.adapters.kite.rest import KiteRestClient
from trader.cli import main
from trader.clock import ExchangeClock
from trader.market.calendar import IST
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import resolve_underlying
from trader.sim import ExchangeSimulator, Faults

from helpers import sim_access_token

pytestmark = pytest.mark.usefixtures("quiet_logs")

OPEN = int(datetime(2026, 11, 20, 9, 15, tzinfo=IST).timestamp()) * 1_000_000_000  # Fri; expiry Mon 23 Nov
NIFTY = resolve_underlying("NSE:NIFTY50-INDEX")


class FakeSleep:
    """Records the delays instead of waiting; ``then`` runs after the n-th sleep (the broker comes back)."""

    def __init__(self, after: int = 0, then: object = None) -> None:
        self.delays: list[float] = []
        self.after = after
        self.then = then

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.after and len(self.delays) == self.after and callable(self.then):
            self.then()


def client(base: str, token: str) -> KiteRestClient:
    # The client's own quick retries stay on (three GETs per call) but take no real time here.
    return KiteRestClient("sim_api_key", token, root=base, timeout_s=2.0, backoff_s=0.001, max_backoff_s=0.001)


async def test_503s_at_start_are_retried_with_backoff_until_the_broker_answers() -> None:
    sim = ExchangeSimulator(start_ns=OPEN, speed=1.0)
    base = await sim.start()
    try:
        kite = client(base, await sim_access_token(base))
        sim.faults = Faults(error_rate=1.0)  # every request gets a 503 until the second backoff is over

        def recover() -> None:
            sim.faults = Faults()

        sleep = FakeSleep(after=2, then=recover)
        tokens = await provision_market(kite, [NIFTY], InstrumentMaster(), ExchangeClock(), strikes_each_side=2,
                                        retry=RetryPolicy(sleep=sleep))
        await kite.close()
    finally:
        await sim.stop()
    assert sleep.delays == [1.0, 2.0]
    assert NIFTY.spot_token in tokens and len(tokens) > 1


async def test_a_broker_that_stays_down_fails_with_one_line_naming_what_was_unreachable() -> None:
    sim = ExchangeSimulator(start_ns=OPEN, speed=1.0)
    base = await sim.start()
    try:
        kite = client(base, await sim_access_token(base))
        sim.faults = Faults(error_rate=1.0)
        sleep = FakeSleep()
        with pytest.raises(BrokerUnreachableError) as raised:
            await provision_market(kite, [NIFTY], InstrumentMaster(), ExchangeClock(), strikes_each_side=2,
                                   retry=RetryPolicy(total_s=60, sleep=sleep))
        await kite.close()
    finally:
        await sim.stop()
    message = str(raised.value)
    assert "/instruments/NFO" in message and base in message and "unreachable" in message
    assert "\n" not in message
    assert sleep.delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 5.0]  # bounded: 60 s of waiting in all


async def test_a_refused_token_is_not_retried_and_says_how_to_fix_it() -> None:
    sim = ExchangeSimulator(start_ns=OPEN, speed=1.0)
    base = await sim.start()
    try:
        kite = client(base, "not-a-token")
        sleep = FakeSleep()
        with pytest.raises(BrokerUnreachableError, match="trader login"):
            await provision_market(kite, [NIFTY], InstrumentMaster(), ExchangeClock(), strikes_each_side=2,
                                   retry=RetryPolicy(sleep=sleep))
        await kite.close()
    finally:
        await sim.stop()
    assert sleep.delays == []


class Always503(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "error", "message": "Service Unavailable", "error_type": "NetworkException"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def always_503() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Always503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_trader_run_exits_2_with_one_line_and_no_traceback_when_the_broker_stays_down(
        clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sleep = FakeSleep()
    clean_env.setattr(provision, "DEFAULT_RETRY", RetryPolicy(total_s=3, sleep=sleep))
    with always_503() as root:
        for name, value in {"TRADER_LIVE_CONFIRM": "yes", "TRADER_KITE__API_KEY": "key",
                            "TRADER_KITE__ACCESS_TOKEN": "token", "TRADER_KITE_API_ROOT": root,
                            "TRADER_DATA_DIR": str(tmp_path), "TRADER_KITE_TIMEOUT_SECONDS": "2"}.items():
            clean_env.setenv(name, value)
        code = main(["run", "--mode", "live"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("start-up error: ") and "/instruments/NFO" in lines[0] and root in lines[0]
    assert sleep.delays == [1.0, 2.0]
