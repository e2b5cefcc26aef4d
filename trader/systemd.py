"""systemd's notify protocol: ``READY=1``, ``STATUS=``, ``WATCHDOG=1`` and ``STOPPING=1`` (issue #10).

``SystemdNotifier`` sends datagrams to the ``NOTIFY_SOCKET`` systemd sets for a ``Type=notify`` unit (a path, or an
abstract socket name starting with ``@``) over an ``AF_UNIX`` ``SOCK_DGRAM`` socket, without blocking. Without
``NOTIFY_SOCKET`` (a terminal, Docker, the tests) every call does nothing. A failed send is logged once and never
raised: the daemon trades on whether systemd hears it or not. Nothing is removed from the environment.

``ServiceNotifier`` is the daemon's side: ``starting`` while the reconciliation gate runs, ``ready()`` once trading
is ready (``READY=1``; it starts the watchdog), ``stopping()`` when the stop begins (``STOPPING=1``), ``close()``.
The watchdog is a task ON the event loop, so a wedged loop stops the ``WATCHDOG=1`` pings by itself (a thread would
go on pinging for a loop that no longer runs). It pings every half of ``WATCHDOG_USEC`` while
``app.health.watchdog_report()`` is ok (loop and feed: trader/health.py), and withholds the ping otherwise, saying
which check failed (at most once a minute for the same failure), so systemd restarts a wedged loop or a dead feed.
The same task keeps ``STATUS=`` (one line: mode, trading state, risk level, positions, day P&L, health) up to date,
at most every ``status_every_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from trader.health import Check, HealthReport
from trader.logging import get_logger
from trader.market.calendar import ist_date, ist_text
from trader.money import format_inr
from trader.store.journal import JournalError

if TYPE_CHECKING:
    from trader.app import App

log = get_logger("trader.systemd")

STATUS_EVERY_S = 5.0  # STATUS= at most this often (systemctl status shows the latest)
WITHHELD_LOG_EVERY_S = 60.0  # a withheld ping is logged at once, then at most this often while the failure lasts
MAX_DATAGRAM = 4096
MIN_ROUND_S = 0.05  # the watchdog task wakes at most this often, whatever WATCHDOG_USEC says
# The journal's note that the feed was failing the watchdog (``{"session_day": ordinal, "since": IST text}``): a start
# that finds it for the same session spares the feed, because the restart it led to did not bring the feed back.
FEED_RESTART_STATE = "watchdog_feed_failing"
_MAX_STATUS_CHARS = 400


def socket_address(value: str) -> str | bytes:
    """``NOTIFY_SOCKET``'s value as an ``AF_UNIX`` address: a path, or ``@name`` for the abstract name ``\\0name``."""
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])  # the name's bytes as the environment had them (not only UTF-8)
    return value


class SystemdNotifier:
    """Datagrams to systemd's ``NOTIFY_SOCKET``; ``enabled`` is False (and ``notify`` a no-op) without one."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.sent = 0
        self._socket: socket.socket | None = None
        self._failed = False  # logged once: a send that failed once will most likely fail again

    @property
    def enabled(self) -> bool:
        return bool(self.address) and self.address not in ("@",)

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if it went out."""
        if not self.enabled or not fields:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")[:MAX_DATAGRAM]
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(message, socket_address(self.address))
        except (OSError, ValueError) as exc:  # no such socket, permission, a full queue (EAGAIN), a path too long
            # or unencodable: never the daemon's problem
            if not self._failed:
                self._failed = True
                log.warning("systemd_notify_failed", socket=self.address, error=str(exc),
                            sent=fields[0].split("=", 1)[0],
                            why="systemd may not hear READY/WATCHDOG/STATUS; the daemon goes on (logged once)")
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


def watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds when systemd asks this process for pings, else None.

    ``WATCHDOG_PID``, when set, names the process systemd watches: another process (a child that inherited the
    environment) must not ping for it."""
    usec_text = env.get("WATCHDOG_USEC", "").strip()
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID", "").strip()
    if pid_text and pid_text != str(pid):
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.warning("systemd_watchdog_usec_invalid", value=usec_text[:40], why="WATCHDOG_USEC is not a number: no "
                    "watchdog pings (systemd will restart the service when WatchdogSec= runs out)")
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


class Watchdog:
    """The pinging task: ``WATCHDOG=1`` every ``interval_s`` while ``judge()`` is ok, ``STATUS=status()`` at most
    every ``status_every_s`` when it changes. ``interval_s`` None: STATUS only."""

    def __init__(self, notifier: SystemdNotifier, *, interval_s: float | None, judge: Callable[[], HealthReport],
                 status: Callable[[], str], status_every_s: float = STATUS_EVERY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self._monotonic = monotonic
        self.interval_s = interval_s
        self.judge = judge
        self.status = status
        self.status_every_s = status_every_s
        self.pings = 0
        self.withheld = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._last_status = ""
        self._status_at = -status_every_s
        self._withheld_key = ""
        self._withheld_logged_at = -WITHHELD_LOG_EVERY_S
        self._pinged_at: float | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="systemd-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        # One round every interval, or more often when the status line is due sooner (then a ping is skipped while
        # the last is recent: the gap between two pings stays under 0.75 interval + one round < the timeout).
        period = min(self.interval_s, self.status_every_s) if self.interval_s is not None else self.status_every_s
        period = max(period, MIN_ROUND_S)  # WATCHDOG_USEC=1 must not make this a busy loop on the trading loop
        while True:
            try:
                self.beat()
            except Exception:  # a bug in a status or health read must not end the task (no ping: systemd judges)
                self.failures += 1
                if self.failures == 1:
                    log.exception("systemd_watchdog_failed", why="no ping this round; logged once")
            await asyncio.sleep(period)

    def beat(self) -> None:
        """One round: the ping (if due and healthy) and the status line (if changed and due)."""
        now = self._monotonic()
        interval = self.interval_s
        if interval is not None and (self._pinged_at is None or now - self._pinged_at >= 0.75 * interval):
            report = self.judge()
            if report.ok:
                if self._withheld_key:
                    log.info("watchdog_ping_resumed", withheld=self.withheld)
                    self._withheld_key = ""
                self._pinged_at = now
                if self.notifier.notify("WATCHDOG=1"):
                    self.pings += 1
            else:
                self.withheld += 1
                self._log_withheld(report)
        if now - self._status_at >= self.status_every_s:
            self.send_status(self.status(), now=now)

    def send_status(self, line: str, *, now: float | None = None) -> None:
        line = " ".join(line.split())[:_MAX_STATUS_CHARS]  # one line: systemd shows it as is
        if line != self._last_status:
            self._last_status = line
            self._status_at = self._monotonic() if now is None else now
            self.notifier.notify(f"STATUS={line}")

    def _log_withheld(self, report: HealthReport) -> None:
        key = ",".join(check.name for check in report.failing)
        now = self._monotonic()
        if key != self._withheld_key or now - self._withheld_logged_at >= WITHHELD_LOG_EVERY_S:
            self._withheld_key = key
            self._withheld_logged_at = now
            log.error("watchdog_ping_withheld", failing=key, detail=report.summary(),
                      why="systemd restarts the service when no WATCHDOG=1 arrives within WatchdogSec")


def status_line(app: App) -> str:
    """``paper ACTIVE, risk LOW, 2 positions, day P&L -₹1,234.50, health ok`` (systemctl status shows it)."""
    risk = app.risk
    positions = len(app.portfolio.book.open_positions())
    health = app.health.report()
    shown = "ok" if health.ok else health.summary()
    return (f"{app.settings.mode} {risk.state.value}, risk {risk.level.value}, {positions} position"
            f"{'' if positions == 1 else 's'}, day P&L {format_inr(app.portfolio.day_pnl)}, health {shown}")


class ServiceNotifier:
    """The App's link to systemd: no-op without ``NOTIFY_SOCKET``. Pings only if ``health.watchdog`` is on and
    systemd asked (``WATCHDOG_USEC``, ``WATCHDOG_PID``)."""

    def __init__(self, app: App, *, env: Mapping[str, str] | None = None,
                 status_every_s: float = STATUS_EVERY_S) -> None:
        environ = os.environ if env is None else env
        self.app = app
        self.notifier = SystemdNotifier(environ.get("NOTIFY_SOCKET", ""))
        interval = watchdog_interval_s(environ, os.getpid()) if app.settings.health.watchdog else None
        self.watchdog = Watchdog(self.notifier, interval_s=interval, judge=self.judge,
                                 status=lambda: status_line(app), status_every_s=status_every_s)
        self.feed_spared_day = 0  # the session (IST date ordinal) in which a failing feed no longer stops the pings
        self._feed_noted_day = 0  # the session for which the journal holds FEED_RESTART_STATE

    def judge(self) -> HealthReport:
        """``app.health.watchdog_report()``, with one restart per session for a failing feed.

        A feed failing the watchdog is noted in the journal. If the process is then restarted (by the watchdog) and
        the feed still fails in the same session, the restart did not cure it (an exchange-wide halt, a holiday the
        calendar does not know): the pings go on, so systemd does not restart the daemon every few minutes all day,
        each time reconciling and alerting; ``/healthz`` and the ``feed_silent`` alert still say the feed is silent.
        The note is cleared as soon as the feed passes again."""
        report = self.app.health.watchdog_report()
        if not any(check.name == "feed" for check in report.failing):
            if self._feed_noted_day:
                self._note_feed_failing(0)
            self.feed_spared_day = 0
            return report
        day = ist_date(self.app.clock.now_ns()).toordinal()
        if self.feed_spared_day == day:
            return HealthReport(tuple(
                Check("feed", True, f"{check.detail}; spared: the watchdog restart earlier in this session did not "
                                    "bring the feed back") if check.name == "feed" else check
                for check in report.checks))
        if self._feed_noted_day != day:
            self._note_feed_failing(day)
        return report

    def _note_feed_failing(self, day: int) -> None:
        journal = self.app.journal
        self._feed_noted_day = day
        if journal is None:
            return
        try:
            journal.save_state(FEED_RESTART_STATE, {"session_day": day, "since": ist_text(self.app.clock.now_ns())},
                               self.app.clock.now_ns())
        except JournalError as exc:  # the journal's own failure is reported by whoever writes it next
            log.warning("watchdog_feed_note_unwritable", error=str(exc))

    def _load_feed_note(self) -> None:
        """At READY: a note for this session means the last process died with its feed failing the watchdog."""
        journal = self.app.journal
        if journal is None:
            return
        try:
            note = journal.load_state(FEED_RESTART_STATE)
        except JournalError as exc:
            log.warning("watchdog_feed_note_unreadable", error=str(exc))
            return
        day = ist_date(self.app.clock.now_ns()).toordinal()
        if note is not None and note.get("session_day") == day:
            self.feed_spared_day = day
            self._feed_noted_day = day
            log.warning("watchdog_feed_spared", since=str(note.get("since", "?")),
                        why="the last run stopped while its feed failed the watchdog and this session's feed has not "
                            "come back yet: a silent feed no longer restarts the daemon until it passes again or the "
                            "session ends (/healthz and the feed_silent alert still report it)")

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled

    def starting(self, what: str) -> None:
        if self.enabled:
            self.watchdog.send_status(f"{self.app.settings.mode} starting: {what}")

    def ready(self) -> None:
        """Trading is ready (the gate passed, the control API listens): ``READY=1`` and the watchdog starts."""
        if not self.enabled:
            return
        if self.watchdog.interval_s is not None:
            self._load_feed_note()
        self.notifier.notify("READY=1")
        self.watchdog.send_status(status_line(self.app))
        log.info("systemd_notified", sent="READY=1", watchdog_interval_s=self.watchdog.interval_s)
        self.watchdog.start()

    async def stopping(self) -> None:
        """The stop begins: ``STOPPING=1``; no more pings (systemd's stop timeout governs from here)."""
        await self.watchdog.stop()
        if self.enabled:
            self.notifier.notify("STOPPING=1", f"STATUS={self.app.settings.mode} stopping: no new orders, in-flight "
                                               "orders settle")

    async def close(self) -> None:
        await self.watchdog.stop()
        self.notifier.close()
