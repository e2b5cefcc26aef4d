"""Alert destinations that misbehave (issue #10 fault injection), over real HTTP on 127.0.0.1: a redirect to
another host is not followed (the alert, its signature and the commands stay with the configured host), an
endless answer is not read into memory; forged or odd updates: a command addressed to another bot, a replayed
update; an alert storm; a stop just after the close."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from test_alerts_app import kinds, running
from test_alerts_app import settings as app_settings

from trader.alerts import runtime
from trader.alerts.outbox import MAX_DEDUP_KEYS, Outbox, Outcome, SendResult
from trader.alerts.rules import Alert, Severity
from trader.alerts.telegram import MIN_EMPTY_POLL_S, TelegramApi, TelegramCommands, TelegramDestination
from trader.alerts.webhook import WebhookDestination
from trader.app import App
from trader.control.service import ControlService
from trader.service_settings import AlertSettings

from alerts_fakes import BOT_TOKEN, BOT_USERNAME, CHAT_ID, fake_bot_api, webhook_sink
from helpers import captured_logs, wait_for

T0 = 1_795_151_700 * 1_000_000_000
ALERT = Alert("halted", Severity.CRITICAL, "trading", "Trading HALTED: day loss limit", T0, {"state": "HALTED"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorder:
    """Another host: records every request that reaches it, answers like a willing Bot API."""

    seen: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, await request.read()))
        update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "text": "/flatten confirm",
                                              "chat": {"id": CHAT_ID}, "from": {"id": 1}}}
        return web.json_response({"ok": True, "result": [update]})


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(application, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


def alert_settings(root: str) -> AlertSettings:
    return AlertSettings(telegram_bot_token=BOT_TOKEN, telegram_chat_id=CHAT_ID, telegram_api_root=root,
                         webhook_url=f"{root}/hook/s3cr3t", webhook_secret="hmac-key", timeout_seconds=5)


class NoService:
    async def flatten(self, underlying: str | None) -> dict[str, Any]:
        raise AssertionError("a command from another host was carried out")


async def test_a_redirect_to_another_host_is_not_followed() -> None:
    other = Recorder()
    async with serve(other.handle) as elsewhere:
        for status in (307, 308, 302, 301):
            async def redirect(request: web.Request, status: int = status) -> web.StreamResponse:
                await request.read()
                return web.Response(status=status, headers={"Location": f"{elsewhere}/stolen{request.path}"})

            async with serve(redirect) as root:
                settings = alert_settings(root)
                api = TelegramApi(settings)
                webhook = WebhookDestination(settings)
                slept: list[float] = []

                async def no_wait(seconds: float) -> None:
                    slept.append(seconds)

                commands = TelegramCommands(api, CHAT_ID, cast(ControlService, NoService()), timeout_s=5,
                                            poll_timeout_s=1, sleep=no_wait)
                try:
                    sent = await TelegramDestination(api, CHAT_ID, 5).send(ALERT, 0)
                    hooked = await webhook.send(ALERT, 0)
                    assert await commands.poll_once() == 0
                finally:
                    await api.close()
                    await webhook.close()
                assert other.seen == [], (status, other.seen)
                assert sent.outcome is Outcome.GIVE_UP and str(status) in sent.detail, sent
                assert hooked.outcome is Outcome.GIVE_UP and str(status) in hooked.detail, hooked
                assert commands.failures == 1 and len(slept) == 1


async def test_an_endless_answer_is_not_read_into_memory() -> None:
    """64 MB of answer: the destinations stop reading early (the server cannot write it all) and say why."""
    written: list[bool] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        await response.prepare(request)
        try:
            for _ in range(64):
                await response.write(b" " * 1_000_000)
            written.append(True)
        except (ConnectionError, RuntimeError):  # the client hung up before the end
            written.append(False)
        return response

    async with serve(endless) as root:
        settings = alert_settings(root)
        api = TelegramApi(settings)
        webhook = WebhookDestination(settings)
        try:
            sent = await TelegramDestination(api, CHAT_ID, 5).send(ALERT, 0)
            assert sent.outcome is Outcome.RETRY and "over" in sent.detail, sent
            hooked = await webhook.send(ALERT, 0)
            assert hooked.outcome is Outcome.DELIVERED  # a 2xx is delivered, whatever it says after
        finally:
            await api.close()
            await webhook.close()
        async with asyncio.timeout(10):
            while len(written) < 2:  # noqa: ASYNC110 - the server's handlers end when the client hangs up
                await asyncio.sleep(0.01)
        assert written == [False, False]


class RecordingService:
    def __init__(self) -> None:
        self.acts: list[str] = []

    async def halt(self, reason: str = "") -> dict[str, Any]:
        self.acts.append(f"halt {reason}")
        return {"detail": "trading is HALTED"}

    async def flatten(self, underlying: str | None) -> dict[str, Any]:
        self.acts.append(f"flatten {underlying}")
        return {"detail": "flattening", "exits": 0}


def update(update_id: int, text: str, chat_id: int = CHAT_ID) -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": update_id, "date": int(time.time()), "text": text,
                                                "chat": {"id": chat_id, "type": "group"}, "from": {"id": 7}}}


async def no_wait(seconds: float) -> None:
    return None


async def test_a_command_addressed_to_another_bot_is_not_carried_out() -> None:
    """In a group with two bots (privacy mode off, or this bot an admin) every message reaches both:
    "/flatten@OtherBot" is not for this one."""
    async with fake_bot_api() as fake:
        api = TelegramApi(alert_settings(fake.url))
        service = RecordingService()
        loop = TelegramCommands(api, CHAT_ID, cast(ControlService, service), timeout_s=5, poll_timeout_s=1,
                                sleep=no_wait)
        try:
            # Before the bot knows its own name: only the commands addressed to no bot in particular.
            fake.command("/halt@TraderTestBot first")
            fake.command("/halt plain")
            assert await loop.poll_once() == 2
            assert service.acts == ["halt halted from Telegram: plain"]
            await loop.whoami()
            assert loop.username == BOT_USERNAME
            for text in ("/flatten@OtherBot", "/halt@OtherBot now", "/halt@TraderTestBotX", "/halt@"):
                fake.command(text)
            fake.command("/halt@tradertestbot mine")  # Telegram's usernames are case-insensitive
            assert await loop.poll_once() == 5
            assert service.acts == ["halt halted from Telegram: plain", "halt halted from Telegram: mine"]
        finally:
            await api.close()


async def test_a_replayed_update_is_not_carried_out_twice() -> None:
    async with fake_bot_api() as fake:
        api = TelegramApi(alert_settings(fake.url))
        service = RecordingService()
        loop = TelegramCommands(api, CHAT_ID, cast(ControlService, service), timeout_s=5, poll_timeout_s=1,
                                sleep=no_wait)
        once = orjson.dumps({"ok": True, "result": [update(500, "/flatten confirm")]})
        # The same update again (a proxy's retry, a replay), then a new one whose id went backwards (Telegram
        # picks a fresh random id after a quiet week): the replay is ignored, the new command is carried out.
        fake.poll_script = [(200, once), (200, once),
                            (200, orjson.dumps({"ok": True, "result": [update(500, "/flatten confirm"),
                                                                       update(42, "/halt back")]}))]
        try:
            with captured_logs() as logs:
                for _ in range(3):
                    await loop.poll_once()
        finally:
            await api.close()
        assert service.acts == ["flatten None", "halt halted from Telegram: back"]
        assert [x["event"] for x in logs].count("telegram_update_replayed") == 2
        assert loop.offset == 501


class NeverAnswers:
    name = "never"

    async def send(self, alert: Alert, repeats: int) -> SendResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_an_alert_storm_costs_each_put_the_same_and_bounded_memory() -> None:
    """100,000 alerts at 1,000 a second, each its own subject (approvals, rejects with their own words), to a
    destination that never answers: every key is inside the 300 s dedup window. Each put used to scan every key
    it remembered once it held 4 × queue_size of them (quadratic: 45,000 puts took minutes); now the whole storm
    takes well under a few seconds, and the keys held stay bounded. Dedup is still right after the storm."""
    now = [1_000.0]
    settings = AlertSettings(webhook_url="http://127.0.0.1:9/hook", dedup_seconds=300, queue_size=500)
    box = Outbox(NeverAnswers(), settings, clock=lambda: now[0])
    box.start()
    severities = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
    started = time.monotonic()
    with captured_logs("ERROR"):
        for n in range(100_000):
            now[0] += 0.001
            box.put(Alert("approval_pending", severities[n % 3], f"I{n}", "text", T0))
    took = time.monotonic() - started
    assert took < 5.0, f"{took:.1f} s for 100,000 puts"
    assert box.remembered_keys <= MAX_DEDUP_KEYS and box.pending <= 501
    assert box.stats.accepted == 100_000 and box.stats.dropped_full >= 99_000
    # Only criticals are left waiting, the oldest of them dropped first.
    assert {a.severity for a in box.waiting()} == {Severity.CRITICAL}
    # The newest key is still remembered: a repeat is counted, then carried by the next one after the window.
    assert not box.put(Alert("approval_pending", Severity.CRITICAL, "I99999", "again", T0))
    now[0] += 301
    assert box.put(Alert("approval_pending", Severity.CRITICAL, "I99999", "later", T0))
    assert box.remembered_keys == 1  # the rest expired with the window
    last = [e for e in box._entries() if e.alert.text == "later"]
    assert [e.repeats for e in last] == [1]
    await box.close(0)


@pytest.mark.usefixtures("clean_env")
async def test_a_stop_just_after_the_close_still_sends_the_end_of_day_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary was made only by the periodic check (every second of wall time): a daemon stopped between the
    close and the next check (a timer that stops it at 15:30, a fast paper run) never said how the day went. The
    stop now looks once more. The periodic check is made rare here so that only the stop can see the close."""
    monkeypatch.setattr(runtime, "CHECK_EVERY_S", 3_600.0)
    async with webhook_sink() as sink:
        # 30 s of event time before the close at 100x: the close passes a third of a second into the run.
        config = app_settings(tmp_path, {"webhook_url": sink.url}, start="2026-11-20T15:29:30", speed=100)
        app = App(config)
        async with running(app):
            close_ns = app.calendar.session_bounds(date(2026, 11, 20))[1]
            await wait_for(lambda: app.clock.now_ns() > close_ns + 5 * 1_000_000_000, within_s=30)
            assert "eod_summary" not in kinds(sink.bodies())
        summaries = [b for b in sink.bodies() if b["kind"] == "eod_summary"]
        assert [b["subject"] for b in summaries] == ["2026-11-20"]
        assert kinds(sink.bodies())[-2:] == ["eod_summary", "stopped"]


async def test_a_get_updates_that_answers_at_once_is_no_busy_loop() -> None:
    """A getUpdates answered at once with nothing (a proxy, a server that ignores ``timeout``) or with 429
    retry_after 0 made the command loop a busy loop of requests: ~2,000 a second and a whole CPU on the event loop
    that trades. An empty answer sooner than MIN_EMPTY_POLL_S waits out the rest; retry_after 0 waits 1 s."""
    polls: list[float] = []

    async def instant(request: web.Request) -> web.StreamResponse:
        await request.read()
        polls.append(time.monotonic())
        if len(polls) % 2:
            return web.json_response({"ok": True, "result": []})
        return web.json_response({"ok": False, "error_code": 429, "description": "Too Many Requests",
                                  "parameters": {"retry_after": 0}}, status=429)

    async with serve(instant) as root:
        api = TelegramApi(alert_settings(root))
        slept: list[float] = []
        clock = [0.0]

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            clock[0] += seconds

        loop = TelegramCommands(api, CHAT_ID, cast(ControlService, RecordingService()), timeout_s=5,
                                sleep=fake_sleep, monotonic=lambda: clock[0])
        try:
            for _ in range(4):
                assert await loop.poll_once() == 0
        finally:
            await api.close()
    assert slept == [MIN_EMPTY_POLL_S, 1.0, MIN_EMPTY_POLL_S, 1.0]


async def test_an_answer_that_echoes_the_request_path_does_not_put_the_token_in_the_log() -> None:
    """A proxy or a misrouted API root that quotes the path (with the token) in its error description."""
    async def echo(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response({"ok": False, "error_code": 404, "description": f"no route for {request.path}"},
                                 status=404)

    async with serve(echo) as root:
        api = TelegramApi(alert_settings(root))
        commands = TelegramCommands(api, CHAT_ID, cast(ControlService, RecordingService()), timeout_s=5,
                                    sleep=no_wait)
        try:
            with captured_logs() as logs:
                sent = await TelegramDestination(api, CHAT_ID, 5).send(ALERT, 0)
                await commands.poll_once()
        finally:
            await api.close()
    assert sent.outcome is Outcome.GIVE_UP and "no route for /bot<bot-token>/sendMessage" in sent.detail, sent
    text = orjson.dumps(logs).decode()
    assert "telegram_poll_failed" in text and BOT_TOKEN not in text and "TEST-token" not in text


async def test_a_failing_get_me_is_asked_again_at_most_once_a_minute() -> None:
    calls: list[str] = []

    async def no_get_me(request: web.Request) -> web.StreamResponse:
        await request.read()
        calls.append(request.path.rsplit("/", 1)[1])
        if calls[-1] == "getMe":
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.json_response({"ok": True, "result": []})

    async with serve(no_get_me) as root:
        api = TelegramApi(alert_settings(root))
        clock = [0.0]

        async def fake_sleep(seconds: float) -> None:
            clock[0] += seconds
            await asyncio.sleep(0)

        loop = TelegramCommands(api, CHAT_ID, cast(ControlService, RecordingService()), timeout_s=5,
                                sleep=fake_sleep, monotonic=lambda: clock[0])
        task = asyncio.create_task(loop.run())
        try:
            await wait_for(lambda: calls.count("getUpdates") >= 300)  # 300 × 0.25 s = 75 s of the loop's time
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await api.close()
    assert calls[0] == "getMe" and calls.count("getMe") == 2, calls.count("getMe")
