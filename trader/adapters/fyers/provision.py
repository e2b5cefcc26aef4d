"""Fyers market provisioning at start-up: the day's symbol master, the index price, and the tokens to subscribe.

As ``kite/provision.py`` (and with its ``fetch_with_retry`` / ``RetryPolicy``): lot sizes, tick sizes, strikes and
expiries come from the day's symbol master (``<symbols_root>/NSE_FO.csv`` / ``BSE_FO.csv``), never from our fallback
tables; the index's last price (``<data_root>/quotes``, ``v.lp``) picks the strikes around spot, and its exchange
timestamp (``v.tt``, epoch seconds) sets the ``ExchangeClock``.

The index is registered under our usual name (``spec.spot_exchange`` / ``spec.spot_symbol``, so
``InstrumentMaster.index_for`` finds it) with its Fyers token: the underlying Fytoken the master's option rows carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import aiohttp

from trader.adapters.fyers.errors import FyersError, FyersSessionExpired, classify
from trader.adapters.fyers.rest import FyersRestClient
from trader.adapters.fyers.session import LOGIN_COMMAND
from trader.adapters.fyers.symbols import FO_FILES, INDEX_TICKERS, parse_symbol_master
from trader.adapters.kite.provision import ProvisioningError, RetryPolicy, VenueErrors, fetch_with_retry
from trader.adapters.ports import BrokerError
from trader.clock import NS_PER_SECOND, Clock, ExchangeClock
from trader.logging import get_logger
from trader.market.calendar import ist_date
from trader.market.instrument_master import InstrumentMaster
from trader.market.instruments import IndexInstrument, UnderlyingSpec
from trader.money import MoneyError, to_paise_or_zero

log = get_logger("trader.fyers.provision")

FYERS_ERRORS = VenueErrors(catch=(FyersError, BrokerError, aiohttp.ClientError, TimeoutError), classify=classify,
                           session_expired=FyersSessionExpired,
                           login_fix=f"run `{LOGIN_COMMAND}` for today's token (or set TRADER_FYERS__ACCESS_TOKEN)",
                           settings_fix="check TRADER_FYERS__APP_ID and the [fyers] roots")


def observe_exchange_time(clock: Clock, stamp: object) -> None:
    """A Fyers quote's ``tt`` (epoch seconds, a number or digits) moves an ExchangeClock."""
    if isinstance(stamp, str) and stamp.strip().isdigit():
        stamp = int(stamp.strip())
    if not isinstance(stamp, int) or isinstance(stamp, bool) or not isinstance(clock, ExchangeClock):
        if stamp is not None and isinstance(clock, ExchangeClock):
            log.warning("exchange_timestamp_unreadable", timestamp=str(stamp))
        return
    clock.observe(stamp * NS_PER_SECOND)


async def provision_market(client: FyersRestClient, underlyings: Sequence[UnderlyingSpec],
                           instruments: InstrumentMaster, clock: Clock, *, symbols_root: str,
                           strikes_each_side: int, retry: RetryPolicy | None = None) -> list[int]:
    """Merge each underlying's options into ``instruments``; return the index and near-the-money option tokens."""
    tokens: list[int] = []
    masters: dict[str, str] = {}
    for spec in underlyings:
        ticker = INDEX_TICKERS.get(spec.name)
        if ticker is None or spec.fo_exchange not in FO_FILES:
            raise ProvisioningError(f"{spec.name}: no Fyers index ticker or symbol master is known for it")
        url = f"{symbols_root.rstrip('/')}/{FO_FILES[spec.fo_exchange]}"
        if url not in masters:
            masters[url] = await fetch_with_retry(f"the {spec.fo_exchange} symbol master ({url})",
                                                  partial(client.download_text, url), root=symbols_root,
                                                  retry=retry, errors=FYERS_ERRORS)
        result = parse_symbol_master(masters[url], spec.fo_exchange, {spec.name})
        try:
            result.check()
        except ValueError as exc:
            raise ProvisioningError(f"{url}: {exc}") from None
        if result.bad:
            log.warning("symbol_master_rows_refused", url=url, refused=len(result.bad),
                        first=[f"line {line}: {problem}" for line, problem in list(result.bad.items())[:3]])
        instruments.merge(result.instruments)
        index_token = result.index_tokens[spec.name]
        instruments.add_index(IndexInstrument(exchange=spec.spot_exchange, tradingsymbol=spec.spot_symbol,
                                              name=spec.name, instrument_token=index_token,
                                              tick_size=spec.tick_size_paise))
        quote = (await fetch_with_retry(f"the {ticker} quote (/quotes)", partial(client.quotes, [ticker]),
                                        root=client.data_root, retry=retry, errors=FYERS_ERRORS)).get(ticker, {})
        try:
            spot = to_paise_or_zero(quote.get("lp"))
        except (MoneyError, TypeError) as exc:
            raise ProvisioningError(f"{ticker}: the index quote's lp is unreadable ({exc})") from None
        observe_exchange_time(clock, quote.get("tt"))
        expiries = [e for e in instruments.expiries(spec.name) if e >= ist_date(clock.now_ns())]
        if not expiries or spot <= 0:
            raise ProvisioningError(f"no listed {spec.name} options or no index price from {client.data_root}; "
                                    "check the symbol master and the market hours")
        width = strikes_each_side * spec.strike_step_paise
        tokens.append(index_token)
        tokens.extend(c.instrument_token for c in instruments.option_chain(spec.name, expiries[0])
                      if abs(c.strike - spot) <= width)
    return tokens
