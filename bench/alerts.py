"""Alert bench, run as ``.venv/bin/python bench/alerts.py [--quick] [--json] [--verbose]``: does a dead alert
endpoint slow the order path?

(c) tick → order latency at a paced 5,000 ticks/s through the real bus and the five real actors, exactly as
    bench/bus.py's (c) measures it (its ``run_latency``), with the ``AlertActor`` on the same bus handing every alert
    to two outboxes, Telegram and a webhook, whose endpoints are a black hole: a TCP server on 127.0.0.1 that
    accepts connections and never answers. To keep the outboxes busy, every fill worse than expected is alerted
    (``slippage_alert_bps`` tiny; the paper broker fills one tick worse), a storm of 200 more alerts a second is
    put to them (a flapping feed, say: their queues fill and drop), nothing is deduplicated, the rate limit is the
    highest allowed, and each request gives up after 0.1 s: the outboxes connect, wait, time out and reconnect for
    the whole run, on the daemon's event loop.
(c') baseline: the same paced run with alerts off.

(c) and (c') take turns on successive slices of the recording (bench/bus.py's paced turns) and their samples are
pooled. Standard output is one figure line per percentile (``bench/benchlib.py``); a ratio near 1 means the alerts
cost the order path nothing measurable. ``--quick``: the last 20 minutes of the recording, one turn of 2 s each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchlib import Figure, emit, note
from bus import (
    FULL_START,
    LATENCY_EVERY_KTH,
    LATENCY_RATE,
    QUICK_START,
    Latency,
    backtest_settings,
    check_approvals,
    empty_latency,
    loop_name,
    paced_ticks,
    record_market,
    recording_instruments,
    run_latency,
)

from trader.actors.alerts import AlertActor
from trader.alerts.outbox import Outbox
from trader.alerts.rules import Alert, AlertRules, Severity
from trader.alerts.telegram import TelegramApi, TelegramDestination
from trader.alerts.webhook import WebhookDestination
from trader.bus import EventBus
from trader.logging import configure_logging
from trader.service_settings import AlertSettings

try:
    import uvloop as _uvloop
except ImportError:  # not on Linux: the default loop, as trader.cli does
    _uvloop = None  # type: ignore[assignment]

TURN_SECONDS = 5.0
STORM_EVERY_S = 0.005  # 200 alerts a second on top of the slippage alerts
SECONDS = 20.0
SECONDS_QUICK = 2.0
BASELINE_LABEL = "the same run, alerts off"


@dataclass(slots=True)
class AlertLoad:
    """The alert side of the runs with alerts on, summed over turns."""

    alerts: int = 0
    attempts: int = 0
    failed: int = 0
    dropped_full: int = 0
    pending_at_end: int = 0
    delivered: int = 0
    outboxes: list[Outbox] = field(default_factory=list)


class BlackHole:
    """Accepts TCP connections on 127.0.0.1 and never answers (nor reads)."""

    def __init__(self) -> None:
        self.connections = 0
        self._held: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> BlackHole:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self._held.append(writer)

        self._server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._held:
            writer.close()


def alert_settings(hole: str) -> AlertSettings:
    return AlertSettings(telegram_bot_token="123456:bench-token", telegram_chat_id=1, telegram_api_root=hole,
                         webhook_url=f"{hole}/hook", webhook_secret="bench-secret", rate_per_minute=600,
                         dedup_seconds=0, max_attempts=2, retry_base_seconds=0.05, timeout_seconds=0.1,
                         slippage_alert_bps=0.001)


async def run_with_alerts(paced: list[Any], instruments: Any, settings: Any, k: int, hole: str,
                          load: AlertLoad) -> Latency:
    """(c) with the AlertActor and two outboxes to the black hole on the bus."""
    config = alert_settings(hole)
    telegram = TelegramApi(config)
    webhook = WebhookDestination(config)
    outboxes = [Outbox(TelegramDestination(telegram, 1, config.timeout_seconds), config, seed=1),
                Outbox(webhook, config, seed=2)]
    made: list[Alert] = []

    def sink(alert: Alert) -> None:
        made.append(alert)
        for outbox in outboxes:
            outbox.put(alert)

    tasks: list[asyncio.Task[None]] = []

    async def storm() -> None:
        n = 0
        while True:
            await asyncio.sleep(STORM_EVERY_S)
            n += 1
            sink(Alert("feed_silent", Severity.INFO if n % 10 else Severity.WARNING, f"storm {n}",
                       "a bench alert", paced[0].ts_ns))

    def attach(bus: EventBus) -> None:
        actor = AlertActor(bus, AlertRules(slippage_alert_bps=config.slippage_alert_bps), sink)
        tasks.append(asyncio.create_task(actor.run(), name="bench:alerts"))
        tasks.append(asyncio.create_task(storm(), name="bench:storm"))
        for outbox in outboxes:
            outbox.start()

    try:
        latency = await run_latency(paced, instruments, settings, LATENCY_RATE, k, attach=attach)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        load.pending_at_end += sum(outbox.pending for outbox in outboxes)
        await asyncio.gather(*(outbox.close(0.0) for outbox in outboxes))
        await telegram.close()
        await webhook.close()
    load.alerts += len(made)
    for outbox in outboxes:
        load.attempts += outbox.stats.attempts
        load.failed += outbox.stats.failed
        load.dropped_full += outbox.stats.dropped_full
        load.delivered += outbox.stats.delivered
    return latency


def figures(with_alerts: Latency, without: Latency) -> list[Figure]:
    ours, base = with_alerts.stats_us["tick→order"], without.stats_us["tick→order"]
    if not ours.get("n") or not base.get("n"):
        raise SystemExit("bench/alerts.py: no tick→order samples; run longer (--seconds)")
    return [Figure(f"tick→order {q} with alerts to a black hole", ours[q], "µs", BASELINE_LABEL, base[q])
            for q in ("p50", "p99")]


async def bench(args: argparse.Namespace) -> tuple[list[Figure], dict[str, Any]]:
    start = QUICK_START if args.quick else FULL_START
    settings = backtest_settings(start)
    seconds = args.seconds or (SECONDS_QUICK if args.quick else SECONDS)
    k = LATENCY_EVERY_KTH
    loop = loop_name()
    note(f"bench/alerts.py — {'quick' if args.quick else 'full'} run; loop: {loop}; Python {platform.python_version()}")
    recording = await record_market(settings)
    ticks = recording.flat()
    gc.collect()
    gc.freeze()
    instruments = recording_instruments(recording)
    turn_seconds = min(TURN_SECONDS, seconds)
    turns = max(1, round(seconds / turn_seconds))
    per_turn = round(LATENCY_RATE * turn_seconds)
    if len(ticks) < turns * per_turn:
        turns = max(1, len(ticks) // per_turn)
    on = empty_latency("bus + 5 actors + alerts to a black hole", LATENCY_RATE, k)
    off = empty_latency("bus + 5 actors, alerts off", LATENCY_RATE, k)
    load = AlertLoad()
    async with BlackHole() as hole:
        for turn in range(turns):
            paced = paced_ticks(ticks[turn * per_turn:(turn + 1) * per_turn], per_turn, LATENCY_RATE)
            gc.collect()
            off.add(await run_latency(paced, instruments, settings, LATENCY_RATE, k))
            gc.collect()
            on.add(await run_with_alerts(paced, instruments, settings, k, hole.url, load))
            note(f"turn {turn + 1}/{turns}: {on.ticks:,} ticks with alerts, {off.ticks:,} without; "
                 f"{load.alerts:,} alerts made, {hole.connections:,} connections into the black hole")
        connections = hole.connections
    check_approvals(on)
    check_approvals(off)
    if not load.alerts or not connections:
        raise SystemExit(f"bench/alerts.py: the alerts were idle ({load.alerts} alerts, {connections} connections): "
                         "the run measured nothing")
    if load.delivered:
        raise SystemExit("bench/alerts.py: an alert was delivered: the black hole answered")
    note(f"alerts: {load.alerts:,} made, {load.attempts:,} sends tried, {load.failed:,} given up (tries spent or "
         "the end of a run), "
         f"{load.dropped_full:,} dropped by full queues, "
         f"{load.pending_at_end:,} still queued at the end; {connections:,} connections into the black hole")
    if args.verbose:
        for run in (on, off):
            note(f"{run.name}: {run.ticks:,} ticks, {run.orders:,} orders, {run.fills:,} fills")
            for label, s in run.stats_us.items():
                if s.get("n"):
                    note(f"  {label:<14} n={int(s['n'])} p50={s['p50']:.1f} p90={s['p90']:.1f} p99={s['p99']:.1f} "
                         f"max={s['max']:.1f} µs")
    results = {"loop": loop, "python": platform.python_version(), "turns": turns, "turn_seconds": turn_seconds,
               "with_alerts": on.as_dict(), "alerts_off": off.as_dict(),
               "alerts": {"made": load.alerts, "attempts": load.attempts, "failed": load.failed,
                          "dropped_full": load.dropped_full,
                          "pending_at_end": load.pending_at_end, "connections": connections}}
    return figures(on, off), results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"one turn of {SECONDS_QUICK:g} paced seconds each")
    parser.add_argument("--json", action="store_true", help="then print the results as one JSON object (last line)")
    parser.add_argument("--verbose", action="store_true", help="detail on standard error")
    parser.add_argument("--seconds", type=float, default=0.0, metavar="S",
                        help=f"paced seconds of each kind (default {SECONDS:g}, --quick {SECONDS_QUICK:g})")
    args = parser.parse_args(argv)
    if args.seconds < 0:
        parser.error("--seconds must not be negative")
    configure_logging("WARNING", io.StringIO())
    coro = bench(args)
    rows, results = _uvloop.run(coro) if _uvloop is not None else asyncio.run(coro)
    emit(rows, results if args.json else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
