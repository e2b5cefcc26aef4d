"""The aiohttp session a venue's REST client uses: the caller's (tests share one), or its own, made on first use and
closed with the client. One home for Kite's and Fyers' clients."""

from __future__ import annotations

from typing import Self

import aiohttp


class OwnedSession:
    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns_session = session is None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        """Close the session if it is the client's own (idempotent); a caller's session stays open."""
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
