"""Kite market provisioning at start-up: the day's instrument dump, the index price, and the tokens to subscribe.

Lot sizes, tick sizes, strikes and expiries come from the day's dump (``/instruments/<exchange>``), never from our
fallback tables; the index's last price (``/quote``) picks the strikes around spot, and its exchange timestamp sets
the ``ExchangeClock`` (a simulator's session may run on another day or hour).

The broker may be briefly unavailable at start (a 503, a timeout, a 429): each request is retried with exponential
backoff for at most ``PROVISION_RETRY_SECONDS`` of waiting in all (on top of the REST client's own few quick
retries), then start-up fails with ``BrokerUnreachableError``, one line naming what could not be read from where. A
refused access token or another 4xx is not retried: it fails at once with the fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar

import aiohttp

from trader.adapters.kite.errors import KiteException, KiteSessionExpired, classify
from trader.adapters.kite.rest import KiteRestClient
from trader.adapters.ports import BrokerError, BrokerUnavailable, RateLimited, VenueSetupError, VenueUnreachableError
from trader.clock import NS_PER_SECOND, Clock, ExchangeClock
from trader.logging import get_logger
from trader.market.calendar import IST, ist_date
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import IndexInstrument, UnderlyingSpec
from trader.money import MoneyError, to_paise_or_zero

log = get_logger("trader.kite.provision")

T = TypeVar("T")

# Waiting between attempts at start-up, in all, before the daemon gives up on an unreachable broker.
PROVISION_RETRY_SECONDS = 60.0
PROVISION_FIRST_DELAY_SECONDS = 1.0
PROVISION_MAX_DELAY_SECONDS = 10.0


class ProvisioningError(VenueSetupError):
    """The broker's data cannot start a trading day (no listed options, no index price); the message says which."""


class BrokerUnreachableError(ProvisioningError, VenueUnreachableError):
    """The broker could not be read at start-up (after the retries, or refused outright); the message says what,
    from where, and what to do."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff at start-up: ``first_delay_s``, doubling up to ``max_delay_s``, for at most ``total_s`` of waiting.
    ``sleep`` is injected so tests do not wait real seconds."""

    total_s: float = PROVISION_RETRY_SECONDS
    first_delay_s: float = PROVISION_FIRST_DELAY_SECONDS
    max_delay_s: float = PROVISION_MAX_DELAY_SECONDS
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class VenueErrors:
    """How a venue's client fails, for ``fetch_with_retry``: the exceptions it raises, their classification, the
    kind that means a refused token, and the fixes to name."""

    catch: tuple[type[BaseException], ...]
    classify: Callable[[BaseException], type[BrokerError]]
    session_expired: type[BrokerError]
    login_fix: str
    settings_fix: str


KITE_ERRORS = VenueErrors(catch=(KiteException, BrokerError, aiohttp.ClientError, TimeoutError), classify=classify,
                          session_expired=KiteSessionExpired,
                          login_fix="run `trader login` for today's token (or set TRADER_KITE__ACCESS_TOKEN)",
                          settings_fix="check TRADER_KITE__API_KEY and TRADER_KITE_API_ROOT")


async def fetch_with_retry(what: str, call: Callable[[], Awaitable[T]], *, root: str,
                           retry: RetryPolicy | None = None, errors: VenueErrors = KITE_ERRORS) -> T:
    """``await call()``, retried while the broker is unavailable or rate-limits; else one clear error."""
    policy = retry or DEFAULT_RETRY
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except errors.catch as exc:
            kind = errors.classify(exc)
            reason = _reason(exc)
            if issubclass(kind, errors.session_expired):
                raise BrokerUnreachableError(
                    f"{what} from {root}: the broker refused the access token ({reason}); {errors.login_fix} and "
                    "start again") from None
            if not issubclass(kind, BrokerUnavailable | RateLimited):
                raise BrokerUnreachableError(f"{what} from {root}: the broker refused the request ({reason}); "
                                             f"{errors.settings_fix}") from None
            delay = min(policy.first_delay_s * 2 ** (attempt - 1), policy.max_delay_s, policy.total_s - waited)
            if delay <= 0:
                raise BrokerUnreachableError(
                    f"{what} from {root}: the broker is unreachable ({reason}) after {attempt} attempts over "
                    f"{waited:g}s; check the network and the broker's status, then start again") from None
            log.warning("provisioning_retry", what=what, attempt=attempt, retry_in_s=round(delay, 3), error=reason)
            await policy.sleep(delay)
            waited += delay


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def observe_exchange_time(clock: Clock, stamp: object) -> None:
    """Kite quotes carry the exchange's time as an IST ``yyyy-mm-dd hh:mm:ss`` string; move an ExchangeClock to it."""
    if not isinstance(stamp, str) or not isinstance(clock, ExchangeClock):
        return
    try:
        moment = datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
    except ValueError:
        log.warning("exchange_timestamp_unreadable", timestamp=stamp)
        return
    clock.observe(int(moment.timestamp()) * NS_PER_SECOND)


async def provision_market(client: KiteRestClient, underlyings: Sequence[UnderlyingSpec],
                           instruments: InstrumentMaster, clock: Clock, *, strikes_each_side: int,
                           retry: RetryPolicy | None = None) -> list[int]:
    """Merge each underlying's F&O dump into ``instruments``; return the index and near-the-money option tokens.

    The chain is the nearest listed expiry on or after today (exchange time) from the dump, so a holiday-moved
    expiry is whatever the exchange lists.
    """
    tokens: list[int] = []
    for spec in underlyings:
        dump = await fetch_with_retry(f"the {spec.fo_exchange} instrument dump (/instruments/{spec.fo_exchange})",
                                      partial(client.instruments, spec.fo_exchange),
                                      root=client.root, retry=retry)
        instruments.merge(dump)
        instruments.add_index(IndexInstrument(exchange=spec.spot_exchange, tradingsymbol=spec.spot_symbol,
                                              name=spec.name, instrument_token=spec.spot_token,
                                              tick_size=spec.tick_size_paise))
        key = f"{spec.spot_exchange}:{spec.spot_symbol}"
        quote = (await fetch_with_retry(f"the {key} quote (/quote)", partial(client.quote, [key]),
                                        root=client.root, retry=retry)).get(key, {})
        try:
            spot = to_paise_or_zero(quote.get("last_price"))
        except MoneyError as exc:
            raise ProvisioningError(f"{key}: the index quote's last_price is unreadable ({exc})") from None
        observe_exchange_time(clock, quote.get("timestamp"))
        expiries = [e for e in instruments.expiries(spec.name) if e >= ist_date(clock.now_ns())]
        if not expiries or spot <= 0:
            raise ProvisioningError(f"no listed {spec.name} options or no index price from {client.root}; check the "
                                    "instrument dump and the market hours")
        width = strikes_each_side * spec.strike_step_paise
        tokens.append(spec.spot_token)
        tokens.extend(c.instrument_token for c in instruments.option_chain(spec.name, expiries[0])
                      if abs(c.strike - spot) <= width)
    return tokens
