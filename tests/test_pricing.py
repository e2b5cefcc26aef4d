"""Tests for trader.market.pricing: textbook values, parity, IV round-trip, Greeks vs finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trader.market.pricing import (
    Greeks,
    OptionKind,
    PricingError,
    black_scholes_chain,
    black_scholes_price,
    greeks,
    implied_volatility,
    norm_cdf,
    norm_pdf,
)

CALL = OptionKind.CALL
PUT = OptionKind.PUT
ONE_MINUTE = 1.0 / (365.0 * 24.0 * 60.0)

# Realistic market ranges shared by the property tests.
spots = st.floats(min_value=1.0, max_value=100_000.0)
moneyness = st.floats(min_value=0.5, max_value=1.5)
years_st = st.floats(min_value=ONE_MINUTE, max_value=2.0)
rates = st.floats(min_value=0.0, max_value=0.15)
vols = st.floats(min_value=0.01, max_value=2.0)
yields = st.floats(min_value=0.0, max_value=0.05)
kinds = st.sampled_from([CALL, PUT])

FAST = settings(max_examples=200, deadline=None)


def reference_call(s: float, k: float, t: float, r: float, sigma: float, q: float = 0.0) -> float:
    """Textbook closed form written independently of the module (uses 1 + erf, not erfc)."""
    d1 = (math.log(s / k) + (r - q + 0.5 * sigma * sigma) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)

    def n(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    return s * math.exp(-q * t) * n(d1) - k * math.exp(-r * t) * n(d2)


# --- normal distribution ---------------------------------------------------------------------------------


def test_norm_cdf_and_pdf_known_values() -> None:
    assert norm_cdf(0.0) == pytest.approx(0.5, abs=1e-15)
    assert norm_cdf(1.96) == pytest.approx(0.9750021048517795, abs=1e-12)
    assert norm_cdf(-1.0) == pytest.approx(0.15865525393145707, abs=1e-12)
    # Lower tail keeps relative precision (1 + erf would round to 0 here).
    assert norm_cdf(-10.0) == pytest.approx(7.619853024160527e-24, rel=1e-10)
    assert norm_pdf(0.0) == pytest.approx(1.0 / math.sqrt(2.0 * math.pi), rel=1e-15)
    assert norm_pdf(1.0) == pytest.approx(0.24197072451914337, rel=1e-12)


# --- known prices ----------------------------------------------------------------------------------------


def test_hull_example_call_and_put() -> None:
    # Hull, Options Futures and Other Derivatives: S=42, K=40, r=10%, sigma=20%, T=0.5 -> c=4.76, p=0.81.
    assert black_scholes_price(CALL, 42.0, 40.0, 0.5, 0.10, 0.20) == pytest.approx(4.76, abs=0.01)
    assert black_scholes_price(PUT, 42.0, 40.0, 0.5, 0.10, 0.20) == pytest.approx(0.81, abs=0.01)


def test_atm_one_year_known_values() -> None:
    assert black_scholes_price(CALL, 100.0, 100.0, 1.0, 0.05, 0.20) == pytest.approx(10.4506, abs=1e-4)
    assert black_scholes_price(PUT, 100.0, 100.0, 1.0, 0.05, 0.20) == pytest.approx(5.5735, abs=1e-4)


def test_haug_generalised_bsm_put_with_dividend_yield() -> None:
    # Haug, Complete Guide to Option Pricing Formulas: S=75, X=70, T=0.5, r=10%, b=5% (q=5%), v=35% -> 4.0870.
    assert black_scholes_price(PUT, 75.0, 70.0, 0.5, 0.10, 0.35, dividend_yield=0.05) == pytest.approx(
        4.0870, abs=1e-4
    )


def test_kite_instrument_type_strings_are_accepted() -> None:
    assert OptionKind("CE") is CALL and OptionKind("PE") is PUT
    by_str = black_scholes_price(OptionKind("CE"), 42.0, 40.0, 0.5, 0.10, 0.20)
    assert by_str == black_scholes_price(CALL, 42.0, 40.0, 0.5, 0.10, 0.20)


def test_nifty_like_weekly_atm_call() -> None:
    spot = strike = 26_000.0
    t, r, sigma = 5.0 / 365.0, 0.065, 0.13
    price = black_scholes_price(CALL, spot, strike, t, r, sigma)
    expected = reference_call(spot, strike, t, r, sigma)
    assert price == pytest.approx(expected, rel=1e-10)
    # Rule of thumb for ATM: ~0.4 * S * sigma * sqrt(T) (~158) plus a little carry.
    assert 150.0 < price < 190.0
    assert price == pytest.approx(169.59, abs=0.01)


@given(spot=spots, m=moneyness, t=years_st, r=rates, sigma=vols, q=yields)
@FAST
def test_call_matches_independent_reference(
    spot: float, m: float, t: float, r: float, sigma: float, q: float
) -> None:
    strike = spot * m
    assert black_scholes_price(CALL, spot, strike, t, r, sigma, q) == pytest.approx(
        reference_call(spot, strike, t, r, sigma, q), rel=1e-9, abs=1e-9 * spot
    )


# --- put-call parity -------------------------------------------------------------------------------------


@given(spot=spots, m=moneyness, t=years_st, r=rates, sigma=vols, q=yields)
@FAST
def test_put_call_parity(spot: float, m: float, t: float, r: float, sigma: float, q: float) -> None:
    strike = spot * m
    call = black_scholes_price(CALL, spot, strike, t, r, sigma, q)
    put = black_scholes_price(PUT, spot, strike, t, r, sigma, q)
    forward_pv = spot * math.exp(-q * t) - strike * math.exp(-r * t)
    # C - P can be ~0, so the tolerance is relative to the scale of the underlying, not of the difference.
    assert call - put == pytest.approx(forward_pv, abs=1e-10 * max(spot, strike))
    assert call >= 0.0 and put >= 0.0


# --- implied volatility ----------------------------------------------------------------------------------


def test_implied_volatility_known_value() -> None:
    assert implied_volatility(CALL, 10.450583572185565, 100.0, 100.0, 1.0, 0.05) == pytest.approx(
        0.2, abs=1e-8
    )
    assert implied_volatility(PUT, 0.8085993729000922, 42.0, 40.0, 0.5, 0.10) == pytest.approx(0.2, abs=1e-8)


@given(kind=kinds, spot=spots, m=moneyness, t=years_st, r=rates, sigma=vols, q=yields)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
def test_implied_volatility_round_trip(
    kind: OptionKind, spot: float, m: float, t: float, r: float, sigma: float, q: float
) -> None:
    strike = spot * m
    price = black_scholes_price(kind, spot, strike, t, r, sigma, q)
    # Where vega is tiny relative to the underlying the price is flat in sigma and sigma is not identifiable
    # from a float price (deep ITM/OTM or very short expiry).
    assume(greeks(kind, spot, strike, t, r, sigma, q).vega > 1e-3 * spot)
    assert implied_volatility(kind, price, spot, strike, t, r, q) == pytest.approx(sigma, abs=1e-5)


def test_implied_volatility_at_intrinsic_returns_low() -> None:
    t, r = 0.25, 0.05
    lower = 120.0 - 100.0 * math.exp(-r * t)
    assert implied_volatility(CALL, lower, 120.0, 100.0, t, r) == 1e-4
    assert implied_volatility(CALL, lower, 120.0, 100.0, t, r, low=0.01) == 0.01
    assert implied_volatility(PUT, 0.0, 120.0, 100.0, t, r) == 1e-4
    assert implied_volatility(PUT, 5.0, 100.0, 105.0, 0.0, r) == 1e-4


def test_implied_volatility_below_lower_bound_raises() -> None:
    t, r = 0.25, 0.05
    lower = 120.0 - 100.0 * math.exp(-r * t)
    with pytest.raises(PricingError, match="below the no-arbitrage lower bound"):
        implied_volatility(CALL, lower - 0.01, 120.0, 100.0, t, r)
    with pytest.raises(PricingError, match="below the no-arbitrage lower bound"):
        implied_volatility(PUT, -1.0, 120.0, 100.0, t, r)


def test_implied_volatility_at_or_above_upper_bound_raises() -> None:
    t, r, q = 0.25, 0.05, 0.02
    call_upper = 100.0 * math.exp(-q * t)
    put_upper = 100.0 * math.exp(-r * t)
    with pytest.raises(PricingError, match="upper bound"):
        implied_volatility(CALL, call_upper, 100.0, 100.0, t, r, q)
    with pytest.raises(PricingError, match="upper bound"):
        implied_volatility(CALL, call_upper + 1.0, 100.0, 100.0, t, r, q)
    with pytest.raises(PricingError, match="upper bound"):
        implied_volatility(PUT, put_upper, 100.0, 100.0, t, r, q)


def test_implied_volatility_above_high_raises() -> None:
    price = black_scholes_price(CALL, 100.0, 100.0, 1.0, 0.05, 3.0)
    with pytest.raises(PricingError, match="high"):
        implied_volatility(CALL, price, 100.0, 100.0, 1.0, 0.05, high=2.0)
    assert implied_volatility(CALL, price, 100.0, 100.0, 1.0, 0.05) == pytest.approx(3.0, abs=1e-7)


def test_implied_volatility_at_expiry_with_time_value_raises() -> None:
    with pytest.raises(PricingError, match="years=0"):
        implied_volatility(CALL, 25.0, 120.0, 100.0, 0.0, 0.05)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"price": math.nan}, "price"),
        ({"price": math.inf}, "price"),
        ({"spot": 0.0}, "spot"),
        ({"years": -1.0}, "years"),
        ({"low": 0.0}, "low"),
        ({"low": 2.0, "high": 1.0}, "high"),
        ({"tolerance": 0.0}, "tolerance"),
    ],
)
def test_implied_volatility_bad_arguments(kwargs: dict[str, float], name: str) -> None:
    args: dict[str, float] = {"price": 5.0, "spot": 100.0, "strike": 100.0, "years": 0.5, "rate": 0.05}
    args.update(kwargs)
    with pytest.raises(PricingError, match=name):
        implied_volatility(CALL, **args)


# --- Greeks ----------------------------------------------------------------------------------------------


def test_hull_greeks_example() -> None:
    # Hull: S=49, K=50, r=5%, sigma=20%, T=20 weeks -> delta 0.522, gamma 0.066, vega 12.1, theta -4.31/yr,
    # rho 8.91.
    g = greeks(CALL, 49.0, 50.0, 20.0 / 52.0, 0.05, 0.20)
    assert g.delta == pytest.approx(0.522, abs=1e-3)
    assert g.gamma == pytest.approx(0.066, abs=1e-3)
    assert g.vega == pytest.approx(12.1, abs=0.01)
    assert g.vega_per_point == pytest.approx(0.121, abs=1e-4)
    assert g.theta == pytest.approx(-4.31, abs=0.01)
    assert g.theta_per_day == pytest.approx(-4.31 / 365.0, abs=1e-4)
    assert g.rho == pytest.approx(8.91, abs=0.01)


def _finite_difference_greeks(
    kind: OptionKind, s: float, k: float, t: float, r: float, sigma: float, q: float
) -> Greeks:
    def p(s_: float = s, t_: float = t, r_: float = r, v_: float = sigma) -> float:
        return black_scholes_price(kind, s_, k, t_, r_, v_, q)

    # Spot steps scale with the width of the terminal distribution (S sigma sqrt T): a fixed fraction of S
    # is far too coarse for gamma a few days from expiry.
    width = s * sigma * math.sqrt(t)
    hs, hg, ht, hr, hv = 1e-4 * width, 1e-3 * width, 1e-5 * t, 1e-5, 1e-5
    return Greeks(
        delta=(p(s_=s + hs) - p(s_=s - hs)) / (2 * hs),
        gamma=(p(s_=s + hg) - 2 * p() + p(s_=s - hg)) / (hg * hg),
        vega=(p(v_=sigma + hv) - p(v_=sigma - hv)) / (2 * hv),
        # Theta is the change as calendar time passes, i.e. as time to expiry shrinks: -dV/dT.
        theta=-(p(t_=t + ht) - p(t_=t - ht)) / (2 * ht),
        rho=(p(r_=r + hr) - p(r_=r - hr)) / (2 * hr),
    )


def _assert_greeks_close(analytic: Greeks, numeric: Greeks, price_scale: float, spot: float) -> None:
    tol = 1e-5 * price_scale
    assert analytic.delta == pytest.approx(numeric.delta, rel=1e-5, abs=1e-6)
    assert analytic.gamma == pytest.approx(numeric.gamma, rel=1e-3, abs=1e-5 * price_scale / spot**2)
    assert analytic.vega == pytest.approx(numeric.vega, rel=1e-5, abs=tol)
    assert analytic.theta == pytest.approx(numeric.theta, rel=1e-4, abs=tol)
    assert analytic.rho == pytest.approx(numeric.rho, rel=1e-5, abs=tol)


@pytest.mark.parametrize("kind", [CALL, PUT])
@pytest.mark.parametrize(
    ("s", "k", "t", "r", "sigma", "q"),
    [
        (100.0, 100.0, 1.0, 0.05, 0.20, 0.0),
        (42.0, 40.0, 0.5, 0.10, 0.20, 0.0),
        (75.0, 70.0, 0.5, 0.10, 0.35, 0.05),
        (26_000.0, 26_500.0, 5.0 / 365.0, 0.065, 0.13, 0.012),
        (26_000.0, 25_000.0, 30.0 / 365.0, 0.065, 0.18, 0.0),
        (55_000.0, 55_000.0, 1.0 / 365.0, 0.065, 0.15, 0.0),
    ],
)
def test_greeks_match_finite_differences(
    kind: OptionKind, s: float, k: float, t: float, r: float, sigma: float, q: float
) -> None:
    analytic = greeks(kind, s, k, t, r, sigma, q)
    numeric = _finite_difference_greeks(kind, s, k, t, r, sigma, q)
    _assert_greeks_close(analytic, numeric, price_scale=s, spot=s)


@given(
    kind=kinds,
    spot=spots,
    m=st.floats(min_value=0.8, max_value=1.2),
    t=st.floats(0.02, 2.0),
    r=rates,
    sigma=st.floats(0.05, 1.0),
    q=yields,
)
@FAST
def test_greeks_match_finite_differences_property(
    kind: OptionKind, spot: float, m: float, t: float, r: float, sigma: float, q: float
) -> None:
    strike = spot * m
    analytic = greeks(kind, spot, strike, t, r, sigma, q)
    numeric = _finite_difference_greeks(kind, spot, strike, t, r, sigma, q)
    _assert_greeks_close(analytic, numeric, price_scale=spot, spot=spot)


def test_greeks_signs_and_theta_convention() -> None:
    c = greeks(CALL, 100.0, 100.0, 0.5, 0.05, 0.2)
    p = greeks(PUT, 100.0, 100.0, 0.5, 0.05, 0.2)
    assert 0.0 < c.delta < 1.0 and -1.0 < p.delta < 0.0
    assert c.delta - p.delta == pytest.approx(1.0, abs=1e-12)  # q = 0: parity in delta
    assert c.gamma == pytest.approx(p.gamma) and c.vega == pytest.approx(p.vega)
    assert c.theta < 0.0  # long ATM call loses value as time passes
    assert c.rho > 0.0 > p.rho


# --- expiry and zero volatility --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "s", "k", "price", "delta"),
    [
        (CALL, 110.0, 100.0, 10.0, 1.0),
        (CALL, 90.0, 100.0, 0.0, 0.0),
        (CALL, 100.0, 100.0, 0.0, 0.0),
        (PUT, 90.0, 100.0, 10.0, -1.0),
        (PUT, 110.0, 100.0, 0.0, 0.0),
        (PUT, 100.0, 100.0, 0.0, 0.0),
    ],
)
def test_at_expiry(kind: OptionKind, s: float, k: float, price: float, delta: float) -> None:
    # Rates, yield and vol must not matter at expiry: no discounting over zero time.
    assert black_scholes_price(kind, s, k, 0.0, 0.10, 0.3, 0.02) == pytest.approx(price, abs=1e-12)
    assert greeks(kind, s, k, 0.0, 0.10, 0.3, 0.02) == Greeks(
        delta=delta, gamma=0.0, vega=0.0, theta=0.0, rho=0.0
    )


def test_zero_vol_is_discounted_forward_intrinsic() -> None:
    s, k, t, r, q = 100.0, 100.0, 0.5, 0.10, 0.02
    forward_pv = s * math.exp(-q * t) - k * math.exp(-r * t)
    assert forward_pv > 0.0
    assert black_scholes_price(CALL, s, k, t, r, 0.0, q) == pytest.approx(forward_pv, abs=1e-12)
    assert black_scholes_price(PUT, s, k, t, r, 0.0, q) == 0.0
    # Continuous in vol from above.
    assert black_scholes_price(CALL, s, k, t, r, 1e-9, q) == pytest.approx(forward_pv, abs=1e-9)

    g = greeks(CALL, s, k, t, r, 0.0, q)
    assert g.delta == pytest.approx(math.exp(-q * t))
    assert g.gamma == 0.0 and g.vega == 0.0
    near = greeks(CALL, s, k, t, r, 1e-6, q)
    assert g.theta == pytest.approx(near.theta, rel=1e-6)
    assert g.rho == pytest.approx(near.rho, rel=1e-6)
    assert greeks(PUT, s, k, t, r, 0.0, q) == Greeks(0.0, 0.0, 0.0, 0.0, 0.0)


# --- bad inputs ------------------------------------------------------------------------------------------

_GOOD: dict[str, float] = {
    "spot": 100.0,
    "strike": 100.0,
    "years": 0.5,
    "rate": 0.05,
    "vol": 0.2,
    "dividend_yield": 0.0,
}


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("spot", 0.0),
        ("spot", -1.0),
        ("spot", math.nan),
        ("spot", math.inf),
        ("strike", 0.0),
        ("strike", -5.0),
        ("strike", math.nan),
        ("years", -1e-9),
        ("years", math.nan),
        ("years", math.inf),
        ("vol", -0.1),
        ("vol", math.nan),
        ("vol", math.inf),
        ("rate", math.nan),
        ("rate", -math.inf),
        ("dividend_yield", math.nan),
    ],
)
def test_bad_inputs_raise_pricing_error_naming_argument(name: str, bad: float) -> None:
    args = {**_GOOD, name: bad}
    for fn in (black_scholes_price, greeks):
        with pytest.raises(PricingError, match=rf"^{name} must be a finite number") as info:
            fn(CALL, **args)
        assert isinstance(info.value, ValueError)


def test_unknown_kind_raises() -> None:
    with pytest.raises(PricingError, match="kind"):
        black_scholes_price("XX", 100.0, 100.0, 0.5, 0.05, 0.2)  # type: ignore[arg-type]  # invalid on purpose


def test_chain_pricing_matches_the_scalar_formula() -> None:
    strikes = np.arange(25_000.0, 27_050.0, 50.0)
    is_call = np.arange(strikes.size) % 2 == 0
    vols = 0.12 + 0.002 * np.abs(strikes - 26_000.0) / 50.0
    prices = black_scholes_chain(is_call, 26_013.5, strikes, 4 / 365, 0.065, vols)
    for k, call, vol, price in zip(strikes, is_call, vols, prices, strict=True):
        kind = OptionKind.CALL if call else OptionKind.PUT
        assert price == pytest.approx(black_scholes_price(kind, 26_013.5, float(k), 4 / 365, 0.065, float(vol)),
                                      rel=1e-9, abs=1e-9)
