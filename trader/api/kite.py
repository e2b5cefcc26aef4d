"""One Kite Connect login for the facade's 'zerodha' objects: credentials, the REST client, the access token.

Kite has no headless login: ``connect()`` returns the login URL; after logging in there, ``generate_session(
request_token)`` (needs the api secret) or ``set_access_token(token)`` (e.g. the one `trader login` stored) gives the
day's access token, which is checked with Kite (``/user/profile``) before it is used.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from trader.adapters.kite.errors import KiteException
from trader.adapters.kite.rest import KiteRestClient
from trader.api.loop import RUNNER, Holder
from trader.config import Settings
from trader.login import login_url


class KiteLogin:
    def __init__(self, owner: Holder, settings: Settings, *, api_key: str, api_secret: str,
                 access_token: str) -> None:
        for name, value in (("api_key", api_key), ("api_secret", api_secret), ("access_token", access_token)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {type(value).__name__}")
        if not api_key.strip():
            raise ValueError("api_key is required for 'zerodha' (from developers.kite.trade; `trader sim` uses "
                             "'sim_api_key')")
        self.owner = owner
        self.settings = settings
        self.api_key = api_key.strip()
        self._api_secret = api_secret
        self.access_token = access_token.strip()
        self.client: KiteRestClient | None = None
        self.on_token: list[Callable[[str], None]] = []  # called in the loop thread with a new token

    @property
    def api_root(self) -> str:
        return self.settings.kite_api_root

    def connect(self) -> str:
        """Start the event loop and the REST client (idempotent); the login URL."""
        RUNNER.acquire(self.owner)
        if self.client is None:
            self.client = KiteRestClient(self.api_key, self.access_token or None, root=self.api_root,
                                         timeout_s=self.settings.kite_timeout_seconds)
        kite = self.settings.kite.model_copy(update={"api_key": self.api_key})
        return login_url(self.settings.model_copy(update={"kite": kite}))

    def generate_session(self, request_token: str) -> str:
        if not self._api_secret:
            raise ValueError("generate_session needs the api secret: pass api_secret=... to the factory")
        if not isinstance(request_token, str) or not request_token.strip().isalnum():
            raise ValueError("request_token must be the request_token value Kite's login redirect carries")
        self.connect()
        client = self.client
        assert client is not None
        try:
            session = RUNNER.run(client.generate_session(request_token.strip(), self._api_secret), 30,
                                 what="the Kite login")
        except KiteException as exc:
            raise PermissionError(f"Kite at {self.api_root} refused the login ({exc}); log in again for a fresh "
                                  "request_token (each works once, for a few minutes)") from None
        self._use(str(session.get("access_token", "")))
        return self.access_token

    def set_access_token(self, access_token: str) -> None:
        if not isinstance(access_token, str) or not access_token.strip():
            raise ValueError("access_token must be the day's Kite access token (`trader login` stores it in "
                             "data/kite_access_token)")
        token = access_token.strip()
        if self.client is not None:
            try:
                RUNNER.run(self.client.profile(access_token=token), 30, what="checking the access token")
            except KiteException as exc:
                raise PermissionError(f"Kite at {self.api_root} refused the access token ({exc}); get today's "
                                      "with `trader login` (tokens expire at about 06:00 IST)") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ConnectionError(f"Kite at {self.api_root} did not answer ({exc!r}); check the network and "
                                      "api_root") from None
        self._use(token)

    def _use(self, token: str) -> None:
        self.access_token = token
        client = self.client
        if client is None:
            return

        def swap() -> None:
            client.access_token = token
            client.dead_token = None
            for call in self.on_token:
                call(token)

        RUNNER.call(swap)

    def ready_client(self) -> KiteRestClient:
        """The client, once there is an access token; else what to do."""
        if self.client is None or not self.access_token:
            raise RuntimeError("no Kite access token: call connect() and set_access_token(token) (or "
                               "generate_session(request_token)) first, or pass access_token= to the factory")
        return self.client

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and RUNNER.running:
            RUNNER.run(client.close(), 10)
