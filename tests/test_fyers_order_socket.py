"""The Fyers order-update socket's connection life: a resync after EVERY connect (the first one too, after the
subscription), a silently dead connection noticed by its missing pongs and replaced, and handshake refusals told
apart (a refused token vs a CDN/firewall 403). Local websockets servers on 127.0.0.1; waits on conditions only."""

from __future__ import annotations

import json

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from trader.adapters.fyers.order_socket import SUBSCRIBE, FyersOrderSocket

from helpers import wait_for

APP_ID = "XB12345-100"


async def test_the_first_connect_resyncs_after_subscribing() -> None:
    """Fills made while the socket could not connect at start-up are read from the book on the first connect."""
    received: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(str(message))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        seen_at_resync: list[list[str]] = []

        async def resync() -> None:
            await wait_for(lambda: bool(received))  # blocks for ever if the book were read before subscribing
            seen_at_resync.append(list(received))

        socket = FyersOrderSocket(APP_ID, "TOK", url=f"ws://127.0.0.1:{port}", on_order=lambda m: None,
                                  on_reconnect=resync)
        socket.start()
        await wait_for(lambda: len(seen_at_resync) == 1)
        await socket.close()
    assert socket.resyncs == 1 and socket.connections == 1 and socket.reconnects == 0
    # the subscription went out before the book was read: nothing can fall between the two
    assert seen_at_resync == [[json.dumps(SUBSCRIBE)]]


async def test_a_silent_connection_is_closed_reconnected_and_resynced() -> None:
    """A server that keeps the TCP connection but answers nothing (no pong) is taken as dead within ~2.5 pings."""
    pings = 0
    sessions = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal pings, sessions
        sessions += 1
        async for message in ws:
            if message == "ping":
                pings += 1
                if sessions > 1:
                    await ws.send("pong")  # the second connection is healthy

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        resyncs: list[int] = []

        async def resync() -> None:
            resyncs.append(sessions)

        socket = FyersOrderSocket(APP_ID, "TOK", url=f"ws://127.0.0.1:{port}", on_order=lambda m: None,
                                  on_reconnect=resync, ping_interval_s=0.2, initial_backoff_s=0.01)
        socket.start()
        await wait_for(lambda: socket.silences == 1 and socket.connections == 2 and socket.connected)
        assert len(resyncs) == 2  # the reconnect reads the book again: updates missed while silent are recovered
        before = pings
        await wait_for(lambda: pings >= before + 4)  # a pong-answering connection stays up
        assert socket.silences == 1 and socket.connections == 2
        await socket.close()


async def test_a_bare_403_is_not_a_dead_token_but_a_token_code_or_401_is() -> None:
    answers = {
        "HTML": (403, "<html><body>Request blocked</body></html>"),
        "JSON": (403, json.dumps({"s": "error", "code": -16, "message": "token invalid"})),
        "UNAUTH": (401, "unauthorized"),
    }

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        token = (request.headers.get("authorization") or "").split(":")[-1]
        if token in answers:
            status, body = answers[token]
            return connection.respond(status, body)
        return None

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        refused: list[str] = []
        socket = FyersOrderSocket(APP_ID, "HTML", url=f"ws://127.0.0.1:{port}", on_order=lambda m: None,
                                  on_token_rejected=lambda token, detail: refused.append(token),
                                  initial_backoff_s=0.01, max_backoff_s=0.02)
        socket.start()
        await wait_for(lambda: socket.reconnects >= 3)  # a CDN's 403: retried, the token is not declared dead
        assert refused == []
        socket.set_access_token("JSON")
        await wait_for(lambda: refused == ["JSON"])
        socket.set_access_token("UNAUTH")
        await wait_for(lambda: refused == ["JSON", "UNAUTH"])
        socket.set_access_token("GOOD")
        await wait_for(lambda: socket.connected)
        await socket.close()
