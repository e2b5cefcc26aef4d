"""What the simulator's market-data sockets (Kite's ``ticker.py``, Fyers' ``fyers/data_socket.py``) share: sending to
one client (a client that went away is skipped, not an error) and a heartbeat when the client has heard nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed


@dataclass(slots=True)
class SocketClient:
    connection: ServerConnection
    last_sent: float = 0.0


class ClientSender:
    """A socket server's sends: counted in ``frames_sent``; each stamps the client's ``last_sent``."""

    frames_sent: int

    async def _send(self, client: SocketClient, message: bytes | str) -> None:
        try:
            await client.connection.send(message)
        except ConnectionClosed:
            return
        client.last_sent = asyncio.get_running_loop().time()
        self.frames_sent += 1

    async def _beat(self, client: SocketClient, every_s: float, beat: bytes) -> None:
        """Send ``beat`` whenever the client heard nothing for ``every_s`` (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every_s / 2)
            if loop.time() - client.last_sent >= every_s:
                await self._send(client, beat)
