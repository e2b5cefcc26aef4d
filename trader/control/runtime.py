"""The control API's place in the daemon's life: the token is loaded before anything else starts (a token file that
cannot be used stops the start), the service and the HTTP server start once trading is ready, and the server stops
first at shutdown, before any actor. Never in backtest, nor with ``control.enabled = false``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trader.control.http import ControlServer
from trader.control.service import ControlService
from trader.control.token import load_token
from trader.logging import get_logger

if TYPE_CHECKING:
    from trader.app import App

log = get_logger("trader.control")


class ControlRuntime:
    def __init__(self, app: App) -> None:
        self.app = app
        self.token, self.token_file = load_token(app.settings)
        self.service: ControlService | None = None
        self.server: ControlServer | None = None

    @classmethod
    def for_app(cls, app: App) -> ControlRuntime | None:
        """The runtime when this daemon serves the control API (paper and live, unless disabled), else None."""
        settings = app.settings
        if settings.mode == "backtest" or not settings.control.enabled:
            return None
        return cls(app)

    async def start(self) -> str:
        """Start the service and the server; return the URL. ``ConfigError`` if it cannot listen."""
        settings = self.app.settings
        self.service = ControlService(self.app)
        where = str(self.token_file) if self.token_file is not None else "TRADER_CONTROL__TOKEN (control.token)"
        server = ControlServer(self.service, settings.control, self.token, token_hint=where)
        url = await server.start()
        self.server = server
        log.info("control_api_listening", url=url, token_file=where, allow_remote=settings.control.allow_remote)
        return url

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()
            log.info("control_api_stopped")
