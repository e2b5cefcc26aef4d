"""The REST routes the Fyers data socket needs, as plain aiohttp handlers (the Fyers REST face mounts them):

* ``POST /data/symbol-token`` ``{"symbols": [...]}`` → ``{"s": "ok", "validSymbol": {symbol: fyToken},
  "invalidSymbol": [...]}``, as the SDK's ``SymbolConversion`` reads it; ``resolve(symbol)`` gives a fyToken or None;
  ``authorize(Authorization header)`` decides (the SDK sends the bare access token, REST clients ``app_id:token``);
* the index map (``index_hsm_mapping.json``): ``{"NSE:NIFTY50-INDEX": "Nifty 50", ...}``.

Error bodies follow Fyers' envelope ``{"s": "error", "code": -nnn, "message": ...}``; the codes used here (-16 bad
token, -50 bad request) are as the Fyers docs list them for REST — unconfirmed for this route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_SYMBOLS = 500  # the SDK sends at most 500 a request


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"s": "error", "code": code, "message": message}, status=status)


def symbol_token_handler(resolve: Callable[[str], str | None], authorize: Callable[[str], bool]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not authorize(request.headers.get("Authorization", "")):
            return _error(401, -16, "Could not authenticate the user")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, -50, "the body is not JSON")
        symbols = body.get("symbols") if isinstance(body, dict) else None
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
            return _error(400, -50, "symbols must be a non-empty list of strings")
        if len(symbols) > MAX_SYMBOLS:
            return _error(400, -50, f"at most {MAX_SYMBOLS} symbols a request")
        valid: dict[str, str] = {}
        invalid: list[str] = []
        for symbol in symbols:
            fy_token = resolve(symbol)
            if fy_token is None:
                invalid.append(symbol)
            else:
                valid[symbol] = fy_token
        return web.json_response({"s": "ok", "validSymbol": valid, "invalidSymbol": invalid})

    return handle


def index_map_handler(index_map: Mapping[str, str]) -> Handler:
    body = dict(index_map)

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    return handle
