"""The simulator's login routes: the Kite Connect login redirect, the session token exchange (checksum), logout and
the user profile. It owns the request and access tokens it issued."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from trader.sim.wire import (
    ORDER_TYPES,
    PRODUCTS,
    USER_ID,
    input_error,
    kite_time,
    success,
    token_error,
)

if TYPE_CHECKING:
    from trader.sim.exchange import ExchangeSimulator


class AuthRoutes:
    def __init__(self, sim: ExchangeSimulator) -> None:
        self.sim = sim
        self.request_tokens: set[str] = set()  # issued by the login redirect, single use
        self.access_tokens: set[str] = set()  # issued by the session exchange, valid until logout

    async def login(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("api_key") != self.sim.api_key:
            raise input_error("Invalid `api_key`.")
        request_token = secrets.token_hex(16)
        self.request_tokens.add(request_token)
        separator = "&" if "?" in self.sim.redirect_url else "?"
        extra = request.query.get("redirect_params")
        location = (f"{self.sim.redirect_url}{separator}request_token={request_token}"
                    f"&action=login&type=login&status=success")
        if extra:
            location += f"&{extra}"
        raise web.HTTPFound(location)

    async def session_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        api_key, request_token = str(form.get("api_key", "")), str(form.get("request_token", ""))
        if api_key != self.sim.api_key:
            raise token_error("Invalid `api_key`.")
        expected = hashlib.sha256((api_key + request_token + self.sim.api_secret).encode()).hexdigest()
        if form.get("checksum") != expected:
            raise token_error("Invalid `checksum`.")
        if request_token not in self.request_tokens:
            raise token_error("Token is invalid or has expired.")
        self.request_tokens.discard(request_token)  # single use
        access_token = secrets.token_hex(16)
        self.access_tokens.add(access_token)
        return success({**self._user(), "api_key": api_key, "access_token": access_token,
                        "public_token": secrets.token_hex(8), "enctoken": "", "refresh_token": "", "silo": "",
                        "login_time": kite_time(self.sim.clock.now_ns())})

    def expire_access_tokens(self) -> int:
        """Every access token issued so far stops working (Kite's daily expiry); returns how many there were."""
        count = len(self.access_tokens)
        self.access_tokens.clear()
        return count

    async def logout(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("access_token", "")
        if request.query.get("api_key") != self.sim.api_key or token not in self.access_tokens:
            raise token_error()
        self.access_tokens.discard(token)
        return success(True)

    @staticmethod
    def _user() -> dict[str, Any]:
        return {"user_id": USER_ID, "user_type": "individual", "email": "sim@example.invalid",
                "user_name": "Kite Simulator", "user_shortname": "Simulator", "broker": "ZERODHA",
                "exchanges": ["NSE", "NFO", "BSE", "BFO"], "products": sorted(PRODUCTS),
                "order_types": list(ORDER_TYPES), "avatar_url": None, "meta": {"demat_consent": "physical"}}

    async def profile(self, request: web.Request) -> web.StreamResponse:
        return success(self._user())
