"""Kite market provisioning at start-up: the day's instrument dump, the index price, and the tokens to subscribe.

Lot sizes, tick sizes, strikes and expiries come from the day's dump (``/instruments/<exchange>``), never from our
fallback tables; the index's last price (``/quote``) picks the strikes around spot, and its exchange timestamp sets
the ``ExchangeClock`` (a simulator's session may run on another day or hour).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from trader.adapters.kite.rest import KiteRestClient
from trader.clock import NS_PER_SECOND, Clock, ExchangeClock
from trader.logging import get_logger
from trader.market.calendar import IST, ist_date
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import IndexInstrument, UnderlyingSpec
from trader.money import MoneyError, to_paise_or_zero

log = get_logger("trader.kite.provision")


class ProvisioningError(RuntimeError):
    """The broker's data cannot start a trading day (no listed options, no index price); the message says which."""


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
                           instruments: InstrumentMaster, clock: Clock, *, strikes_each_side: int) -> list[int]:
    """Merge each underlying's F&O dump into ``instruments``; return the index and near-the-money option tokens.

    The chain is the nearest listed expiry on or after today (exchange time) from the dump, so a holiday-moved
    expiry is whatever the exchange lists.
    """
    tokens: list[int] = []
    for spec in underlyings:
        instruments.merge(await client.instruments(spec.fo_exchange))
        instruments.add_index(IndexInstrument(exchange=spec.spot_exchange, tradingsymbol=spec.spot_symbol,
                                              name=spec.name, instrument_token=spec.spot_token,
                                              tick_size=spec.tick_size_paise))
        key = f"{spec.spot_exchange}:{spec.spot_symbol}"
        quote = (await client.quote([key])).get(key, {})
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
