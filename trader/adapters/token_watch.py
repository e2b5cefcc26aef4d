"""A venue's day access token: noticing that it died, and taking up the next one without a restart (venue-neutral:
Kite's ``kite/session.py`` and Fyers' ``fyers/session.py`` build one with their own client and refusal test).

The venue refuses a token once it is no longer valid (Kite: HTTP 403 ``TokenException``, about 06:00 IST the next day;
Fyers: its token-expired codes; a logout, a login elsewhere); its sockets refuse their handshake. The REST client and
the sockets report such a refusal here (``report_rejected``). The watcher then, once per dead token: logs
``token_expired`` with the fix, publishes ``VenueStatus(ok=False, problem="token_expired")`` (the risk gate stops
entries; the position view stays), and polls the token file the venue's login writes every ``poll_s`` seconds. A
token there that differs from the dead one is checked with one profile request; when the venue accepts it, it goes
into the REST client and every socket using it (one waiting for it connects at once), ``token_renewed`` is logged and
``VenueStatus(ok=True, problem="token_expired")`` published. A token the venue refuses is logged once
(``token_candidate_refused``) and never tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from trader.clock import NS_PER_SECOND, Clock
from trader.events import VenueStatus
from trader.logging import get_logger

log = get_logger("trader.token_watch")

PROBLEM = "token_expired"


class TokenClient(Protocol):
    """What the watcher needs of a venue's REST client."""

    access_token: str | None
    dead_token: str | None
    on_token_rejected: Callable[[str, str], None] | None

    async def profile(self, *, access_token: str | None = None) -> dict[str, Any]: ...


class TokenUser(Protocol):
    """A socket that authenticates with the token (a ticker, an order socket)."""

    def set_access_token(self, token: str) -> None: ...


def read_token_file(path: Path) -> str:
    """The token `trader login` stored ("" when the file is missing or unreadable)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class TokenWatcher:
    """``is_refusal(exc)``: the venue refused the token checked (not merely could not answer); ``venue`` and
    ``login_command`` name the venue and its fix in the log and the published status."""

    def __init__(self, client: TokenClient, *, token_file: Path, clock: Clock,
                 publish: Callable[[object], None], is_refusal: Callable[[BaseException], bool],
                 poll_s: float = 5.0, venue: str = "Kite", login_command: str = "trader login") -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s}")
        self.client = client
        self.token_file = token_file
        self.clock = clock
        self.publish = publish
        self.poll_s = poll_s
        self.is_refusal = is_refusal
        self.venue = venue
        self.login_command = login_command
        self.tickers: list[TokenUser] = []
        self.expired = False
        self.expiries = 0
        self.renewals = 0
        self.polls = 0  # token file reads while expired
        self._expired_ns = 0
        self._task: asyncio.Task[None] | None = None
        client.on_token_rejected = self.report_rejected

    @property
    def fix(self) -> str:
        return (f"run `{self.login_command}`: it writes {self.token_file}, which the daemon reads every "
                f"{self.poll_s:g}s and takes up without a restart")

    def add_ticker(self, ticker: TokenUser) -> None:
        self.tickers.append(ticker)

    def report_rejected(self, token: str, detail: str) -> None:
        """The venue refused ``token`` (a REST refusal or a socket handshake refusal)."""
        if self.expired or not token or token != self.client.access_token:
            return  # already handled, or a token that is no longer ours
        self.expired = True
        self.expiries += 1
        self._expired_ns = self.clock.now_ns()
        self.client.dead_token = token  # nothing more is sent with it
        log.error("token_expired", detail=detail, token_file=str(self.token_file), fix=self.fix,
                  effect="new entries are refused and no request is sent with the dead token; positions are kept "
                         "and trading resumes by itself once a valid token appears")
        self.publish(VenueStatus(ts_ns=self._expired_ns, ok=False, problem=PROBLEM,
                                 detail=f"{self.venue} refused the access token ({detail}); {self.fix}"))
        self._task = asyncio.create_task(self._watch(token), name=f"{self.venue.lower()}-token-watch")

    async def _watch(self, dead: str) -> None:
        refused = {dead}
        failed: set[str] = set()
        while True:
            await asyncio.sleep(self.poll_s)
            self.polls += 1
            candidate = read_token_file(self.token_file)
            if not candidate or candidate in refused:
                continue
            try:
                await self.client.profile(access_token=candidate)
            except Exception as exc:
                if self.is_refusal(exc):
                    refused.add(candidate)
                    log.warning("token_candidate_refused", token_file=str(self.token_file),
                                hint=f"{self.venue} refused the token in the file too: "
                                     f"run `{self.login_command}` again")
                elif candidate not in failed:  # the broker could not say: ask again at the next poll
                    failed.add(candidate)
                    log.warning("token_check_failed", token_file=str(self.token_file), error=repr(exc))
                continue
            self._renew(candidate)
            return

    def _renew(self, token: str) -> None:
        self.client.access_token = token
        self.client.dead_token = None
        for ticker in self.tickers:
            ticker.set_access_token(token)
        self.expired = False
        self.renewals += 1
        now = self.clock.now_ns()
        log.warning("token_renewed", token_file=str(self.token_file),
                    expired_for_s=round((now - self._expired_ns) / NS_PER_SECOND, 1),
                    effect="reconnecting with the new token; entries are allowed again")
        self.publish(VenueStatus(ts_ns=now, ok=True, problem=PROBLEM, detail="a new access token was accepted"))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
