"""Black-Scholes-Merton prices, Greeks and implied volatility for European index options.

Units: rupees, years, annualised continuously-compounded decimal rates, yields and volatilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

__all__ = [
    "Greeks",
    "OptionKind",
    "PricingError",
    "black_scholes_chain",
    "black_scholes_price",
    "greeks",
    "implied_volatility",
    "norm_cdf",
    "norm_pdf",
]

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class PricingError(ValueError):
    """An input is outside the domain of the model, or no implied volatility exists for a price."""


class OptionKind(StrEnum):
    # Values are Kite's ``instrument_type``, so ``OptionKind(row["instrument_type"])`` maps them directly.
    CALL = "CE"
    PUT = "PE"


@dataclass(frozen=True, slots=True)
class Greeks:
    """Sensitivities of one option's price, in rupees.

    ``delta``: per 1 rupee move in spot.
    ``gamma``: change of delta per 1 rupee move in spot.
    ``vega``: per 1.00 change in volatility, i.e. per 100 vol points (see ``vega_per_point``).
    ``theta``: per year of calendar time passing, i.e. ``-dV/d(years)``; negative for a typical long option
    (see ``theta_per_day``).
    ``rho``: per 1.00 change in the interest rate, i.e. per 10000 basis points.
    """

    delta: float
    gamma: float
    vega: float
    theta: float
    rho: float

    @property
    def vega_per_point(self) -> float:
        """Price change for a 1 vol point (0.01) move in volatility."""
        return self.vega / 100.0

    @property
    def theta_per_day(self) -> float:
        """Price change over one calendar day; days are 1/365 year, matching how ``years`` is measured."""
        return self.theta / 365.0


def norm_cdf(x: float) -> float:
    """Standard normal cumulative distribution function."""
    # erfc rather than 1 + erf keeps full relative precision deep in the lower tail, where OTM prices live.
    return 0.5 * math.erfc(-x / _SQRT_2)


def norm_pdf(x: float) -> float:
    """Standard normal probability density function."""
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def _is_call(kind: OptionKind) -> bool:
    # Callers may pass Kite's raw "CE"/"PE" strings; StrEnum equality accepts those, anything else is a bug.
    if kind == OptionKind.CALL:
        return True
    if kind == OptionKind.PUT:
        return False
    raise PricingError(f"kind must be OptionKind.CALL ('CE') or OptionKind.PUT ('PE'), got {kind!r}")


def _validate(  # noqa: PLR0917
    spot: float, strike: float, years: float, rate: float, vol: float, dividend_yield: float
) -> None:
    # Comparisons with NaN are False, so each check is phrased to fail for NaN as well as out-of-range values.
    if not (math.isfinite(spot) and spot > 0.0):
        raise PricingError(f"spot must be a finite number > 0, got {spot!r}")
    if not (math.isfinite(strike) and strike > 0.0):
        raise PricingError(f"strike must be a finite number > 0, got {strike!r}")
    if not (math.isfinite(years) and years >= 0.0):
        raise PricingError(f"years must be a finite number >= 0, got {years!r}")
    if not math.isfinite(rate):
        raise PricingError(f"rate must be a finite number, got {rate!r}")
    if not (math.isfinite(vol) and vol >= 0.0):
        raise PricingError(f"vol must be a finite number >= 0, got {vol!r}")
    if not math.isfinite(dividend_yield):
        raise PricingError(f"dividend_yield must be a finite number, got {dividend_yield!r}")


def _price(  # noqa: PLR0917
    call: bool, spot: float, strike: float, years: float, rate: float, vol: float, q: float
) -> float:
    if years == 0.0:
        return max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
    spot_pv = spot * math.exp(-q * years)
    strike_pv = strike * math.exp(-rate * years)
    sigma_sqrt_t = vol * math.sqrt(years)
    # sigma_sqrt_t can underflow to 0 for a tiny positive vol; the deterministic limit is then exact.
    if sigma_sqrt_t == 0.0:
        return max(spot_pv - strike_pv, 0.0) if call else max(strike_pv - spot_pv, 0.0)
    d1 = math.log(spot_pv / strike_pv) / sigma_sqrt_t + 0.5 * sigma_sqrt_t
    d2 = d1 - sigma_sqrt_t
    if call:
        return spot_pv * norm_cdf(d1) - strike_pv * norm_cdf(d2)
    return strike_pv * norm_cdf(-d2) - spot_pv * norm_cdf(-d1)


# Positional parameters are the public contract: callers on the hot path pass them positionally.
def black_scholes_price(  # noqa: PLR0917
    kind: OptionKind,
    spot: float,
    strike: float,
    years: float,
    rate: float,
    vol: float,
    dividend_yield: float = 0.0,
) -> float:
    """Black-Scholes-Merton price of a European option with a continuous dividend yield.

    At ``years == 0`` this is the intrinsic value; at ``vol == 0`` it is the discounted forward intrinsic
    value ``max(S e^{-qT} - K e^{-rT}, 0)`` (mirrored for puts). Raises ``PricingError`` for out-of-domain
    inputs.
    """
    call = _is_call(kind)
    _validate(spot, strike, years, rate, vol, dividend_yield)
    return _price(call, spot, strike, years, rate, vol, dividend_yield)


def greeks(  # noqa: PLR0917
    kind: OptionKind,
    spot: float,
    strike: float,
    years: float,
    rate: float,
    vol: float,
    dividend_yield: float = 0.0,
) -> Greeks:
    """Analytic Black-Scholes-Merton Greeks; units and sign conventions are documented on ``Greeks``.

    At expiry delta is the payoff's slope (1 or 0 for a call, -1 or 0 for a put; 0 exactly at the money)
    and the other Greeks are 0. At zero volatility the option is a deterministic forward payoff, so gamma
    and vega are 0 and delta, theta and rho are those of the forward when it is in the money, else 0.
    """
    call = _is_call(kind)
    _validate(spot, strike, years, rate, vol, dividend_yield)
    q = dividend_yield
    if years == 0.0:
        if call:
            return Greeks(delta=1.0 if spot > strike else 0.0, gamma=0.0, vega=0.0, theta=0.0, rho=0.0)
        return Greeks(delta=-1.0 if spot < strike else 0.0, gamma=0.0, vega=0.0, theta=0.0, rho=0.0)

    sqrt_t = math.sqrt(years)
    spot_df = math.exp(-q * years)
    strike_df = math.exp(-rate * years)
    spot_pv = spot * spot_df
    strike_pv = strike * strike_df
    sigma_sqrt_t = vol * sqrt_t

    if sigma_sqrt_t == 0.0:
        # N(d1), N(d2) collapse to the in-the-money indicator and n(d1) to 0; the kink at the forward is
        # resolved to the out-of-the-money side, matching the price there (0).
        itm = 1.0 if (spot_pv > strike_pv if call else strike_pv > spot_pv) else 0.0
        if call:
            return Greeks(
                delta=itm * spot_df,
                gamma=0.0,
                vega=0.0,
                theta=itm * (q * spot_pv - rate * strike_pv),
                rho=itm * years * strike_pv,
            )
        return Greeks(
            delta=-itm * spot_df,
            gamma=0.0,
            vega=0.0,
            theta=itm * (rate * strike_pv - q * spot_pv),
            rho=-itm * years * strike_pv,
        )

    d1 = math.log(spot_pv / strike_pv) / sigma_sqrt_t + 0.5 * sigma_sqrt_t
    d2 = d1 - sigma_sqrt_t
    pdf_d1 = norm_pdf(d1)
    gamma = spot_df * pdf_d1 / (spot * sigma_sqrt_t)
    vega = spot_pv * pdf_d1 * sqrt_t
    # Time decay of the optionality itself, common to calls and puts; the carry terms below differ by kind.
    decay = -spot_pv * pdf_d1 * vol / (2.0 * sqrt_t)
    if call:
        cdf_d1 = norm_cdf(d1)
        cdf_d2 = norm_cdf(d2)
        return Greeks(
            delta=spot_df * cdf_d1,
            gamma=gamma,
            vega=vega,
            theta=decay - rate * strike_pv * cdf_d2 + q * spot_pv * cdf_d1,
            rho=years * strike_pv * cdf_d2,
        )
    cdf_neg_d1 = norm_cdf(-d1)
    cdf_neg_d2 = norm_cdf(-d2)
    return Greeks(
        delta=-spot_df * cdf_neg_d1,
        gamma=gamma,
        vega=vega,
        theta=decay + rate * strike_pv * cdf_neg_d2 - q * spot_pv * cdf_neg_d1,
        rho=-years * strike_pv * cdf_neg_d2,
    )


def implied_volatility(  # noqa: PLR0917
    kind: OptionKind,
    price: float,
    spot: float,
    strike: float,
    years: float,
    rate: float,
    dividend_yield: float = 0.0,
    low: float = 1e-4,
    high: float = 5.0,
    tolerance: float = 1e-8,
) -> float:
    """Volatility in ``[low, high]`` at which ``black_scholes_price`` equals ``price`` (Brent's method).

    ``tolerance`` is both the solver's absolute tolerance on volatility and the rupee tolerance for
    treating ``price`` as equal to the no-arbitrage lower bound (discounted forward intrinsic), in which
    case ``low`` is returned. A price between that bound and the model price at ``low`` also returns
    ``low``: such a price carries no volatility information at the solver's resolution.

    Raises ``PricingError`` if an input is out of domain, if ``price`` is below the lower bound or at/above
    the upper bound (call: ``spot*e^{-qT}``, put: ``strike*e^{-rT}``), if ``years == 0`` and ``price`` is
    not the intrinsic value, or if the implied volatility would exceed ``high``.
    """
    call = _is_call(kind)
    _validate(spot, strike, years, rate, 0.0, dividend_yield)
    if not math.isfinite(price):
        raise PricingError(f"price must be a finite number, got {price!r}")
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low < high):
        raise PricingError(f"low and high must be finite with 0 < low < high, got low={low!r}, high={high!r}")
    if not (math.isfinite(tolerance) and tolerance > 0.0):
        raise PricingError(f"tolerance must be a finite number > 0, got {tolerance!r}")

    q = dividend_yield
    spot_pv = spot * math.exp(-q * years)
    strike_pv = strike * math.exp(-rate * years)
    if call:
        lower, upper, upper_name = max(spot_pv - strike_pv, 0.0), spot_pv, "spot*exp(-dividend_yield*years)"
    else:
        lower, upper, upper_name = max(strike_pv - spot_pv, 0.0), strike_pv, "strike*exp(-rate*years)"

    if price < lower - tolerance:
        raise PricingError(
            f"price {price!r} is below the no-arbitrage lower bound {lower!r} "
            f"(discounted forward intrinsic value); no implied volatility exists"
        )
    if price <= lower + tolerance:
        return low
    if years == 0.0:
        raise PricingError(
            f"price {price!r} differs from the intrinsic value {lower!r} at years=0; "
            f"an expired option has no implied volatility"
        )
    if price >= upper:
        raise PricingError(
            f"price {price!r} is at or above the no-arbitrage upper bound {upper!r} ({upper_name}); "
            f"no implied volatility exists"
        )

    def objective(vol: float) -> float:
        return _price(call, spot, strike, years, rate, vol, q) - price

    f_low = objective(low)
    if f_low >= 0.0:
        return low
    if objective(high) < 0.0:
        raise PricingError(f"implied volatility for price {price!r} exceeds high={high!r}; raise high")
    # scipy.optimize costs ~24 MB of RSS on import: only implied volatility needs it, so only it imports it.
    from scipy.optimize import brentq  # noqa: PLC0415

    try:
        root = brentq(objective, low, high, xtol=tolerance, maxiter=200)
    except RuntimeError as exc:  # brentq's non-convergence signal
        raise PricingError(f"implied volatility did not converge for price {price!r}: {exc}") from exc
    return float(root)


def black_scholes_chain(  # noqa: PLR0917
    is_call: npt.NDArray[np.bool_],
    spot: float,
    strikes: npt.NDArray[np.float64],
    years: float,
    rate: float,
    vols: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Prices of a whole chain at once (one spot and expiry, per-strike vols): the simulated market's hot path.

    Inputs are trusted (the caller builds them); ``years`` and every vol must be positive.
    """
    sqrt_t = math.sqrt(years)
    std = vols * sqrt_t
    d1 = (np.log(spot / strikes) + (rate + 0.5 * vols * vols) * years) / std
    d2 = d1 - std
    discounted_strikes = strikes * math.exp(-rate * years)
    calls = spot * ndtr(d1) - discounted_strikes * ndtr(d2)
    puts = discounted_strikes * ndtr(-d2) - spot * ndtr(-d1)
    result: npt.NDArray[np.float64] = np.where(is_call, calls, puts)
    return result
