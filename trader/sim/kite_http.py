"""The Kite face's HTTP plumbing: Kite Connect v3's routes on the core's route groups, and the middleware that
authorises requests (``X-Kite-Version: 3``, ``Authorization: token api_key:access_token``), applies the fault knobs
(latency, offline, 429 and 5xx shares) and turns errors into Kite's envelopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from trader.sim.order_entry import EntryError
from trader.sim.orders import kite_entry_error
from trader.sim.wire import KiteError, failure, rate_limited, token_error

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator

_PUBLIC = frozenset({("GET", "/connect/login"), ("POST", "/session/token")})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def kite_app(sim: ExchangeSimulator) -> web.Application:
    """The Kite REST application over ``sim``'s route groups."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        faults = sim.faults
        if faults.latency_ms:
            await sim.pause(faults.latency_ms / 1000)
        try:
            if sim.offline:
                raise KiteError(503, "NetworkException", "Simulated outage: the broker cannot be reached.")
            if (request.method, request.path) not in _PUBLIC:
                _authorise(sim, request)
                if faults.rate_limit_rate and sim.rng.random() < faults.rate_limit_rate:
                    raise rate_limited()
                if faults.error_rate and sim.rng.random() < faults.error_rate:
                    raise sim.rng.choice([
                        KiteError(500, "GeneralException", "Simulated internal server error."),
                        KiteError(502, "DataException", "Simulated OMS response error."),
                        KiteError(503, "NetworkException", "Simulated OMS unavailability."),
                    ])
            return await handler(request)
        except KiteError as error:
            return failure(error)
        except EntryError as error:
            return failure(kite_entry_error(error))
        except web.HTTPNotFound:
            return failure(KiteError(404, "GeneralException", f"Route not found: {request.method} {request.path}"))
        except web.HTTPMethodNotAllowed:
            return failure(KiteError(405, "GeneralException", f"Method not allowed: {request.method}"))

    app = web.Application(middlewares=[middleware])
    r = app.router
    auth, portfolio, orders, market = sim.auth, sim.portfolio, sim.order_routes, sim.market_data
    r.add_get("/connect/login", auth.login)
    r.add_post("/session/token", auth.session_token)
    r.add_delete("/session/token", auth.logout)
    r.add_get("/user/profile", auth.profile)
    r.add_get("/user/margins", portfolio.margins)
    r.add_get("/user/margins/{segment}", portfolio.margins)
    r.add_get("/portfolio/positions", portfolio.positions)
    r.add_post("/margins/orders", orders.order_margins)
    r.add_get("/orders", orders.orders)
    r.add_get("/orders/{order_id}", orders.order_history)
    r.add_get("/orders/{order_id}/trades", orders.order_trades)
    r.add_post("/orders/{variety}", orders.place)
    r.add_put("/orders/{variety}/{order_id}", orders.modify)
    r.add_delete("/orders/{variety}/{order_id}", orders.cancel)
    r.add_get("/trades", orders.trades)
    r.add_get("/quote", market.quote)
    r.add_get("/quote/ltp", market.ltp)
    r.add_get("/instruments", market.instruments_dump)
    r.add_get("/instruments/{exchange}", market.instruments_dump)
    return app


def _authorise(sim: ExchangeSimulator, request: web.Request) -> None:
    if request.headers.get("X-Kite-Version") != "3":
        raise token_error("Missing or unsupported `X-Kite-Version` header (expected 3).")
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    api_key, _, access_token = credentials.partition(":")
    if scheme != "token" or api_key != sim.api_key or access_token not in sim.auth.access_tokens:
        sim.token_refusals[f"{request.method} {request.path}"] += 1
        raise token_error()
