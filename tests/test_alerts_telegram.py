"""The destinations over real HTTP on 127.0.0.1: Telegram's sendMessage (HTML, 429 retry_after, 5xx, 4xx,
malformed answers, the token never in a log), the command loop (the configured chat only, stale commands, malformed
updates, a failing getUpdates), and the webhook (HMAC of the body, retry on 5xx, give up on 4xx)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any, cast

import orjson

from trader.alerts.outbox import Outbox, Outcome
from trader.alerts.rules import Alert, Severity
from trader.alerts.telegram import TelegramApi, TelegramCommands, TelegramDestination, alert_html, run_command
from trader.alerts.webhook import SIGNATURE_HEADER, WebhookDestination
from trader.control.service import ControlService, Refused
from trader.market.calendar import ist_text
from trader.service_settings import AlertSettings

from alerts_fakes import BOT_TOKEN, CHAT_ID, STRANGER_CHAT_ID, black_hole, fake_bot_api, webhook_sink
from helpers import captured_logs, wait_for

T0 = 1_795_151_700 * 1_000_000_000
ALERT = Alert("halted", Severity.CRITICAL, "trading", "Trading HALTED: <kill switch> & more", T0, {"state": "HALTED"})


def tg_settings(root: str, **overrides: Any) -> AlertSettings:
    return AlertSettings(telegram_bot_token=BOT_TOKEN, telegram_chat_id=CHAT_ID, telegram_api_root=root,
                         **{"timeout_seconds": 5, "retry_base_seconds": 0.01, **overrides})


async def test_send_message_as_html_and_the_answers_of_the_bot_api() -> None:
    async with fake_bot_api() as fake:
        api = TelegramApi(tg_settings(fake.url))
        dest = TelegramDestination(api, CHAT_ID, 5)
        try:
            assert (await dest.send(ALERT, 3)).outcome is Outcome.DELIVERED
            [message] = fake.sent
            assert message["chat_id"] == CHAT_ID and message["parse_mode"] == "HTML"
            assert message["text"] == ("<b>CRITICAL halted</b>\nTrading HALTED: &lt;kill switch&gt; &amp; more\n"
                                       "<i>(+3 more like this since the last one)</i>")
            fake.send_script = [
                (429, b'{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7",'
                      b'"parameters":{"retry_after":7}}'),
                (502, b"<html>Bad Gateway</html>"),
                (400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}'),
                (200, b"not json"),
                (200, b'{"ok":true}'),
                (200, b'[1, 2]'),
            ]
            too_many = await dest.send(ALERT, 0)
            assert (too_many.outcome, too_many.retry_after_s) == (Outcome.RETRY, 7.0)
            assert (await dest.send(ALERT, 0)).outcome is Outcome.RETRY
            refused = await dest.send(ALERT, 0)
            assert refused.outcome is Outcome.GIVE_UP and "chat not found" in refused.detail
            for _ in range(3):  # malformed answers: a failed call, never an exception
                assert (await dest.send(ALERT, 0)).outcome is Outcome.RETRY
        finally:
            await api.close()


async def test_the_bot_token_never_reaches_a_log_or_an_error_text() -> None:
    async with black_hole() as hole:
        port = int(hole.rsplit(":", 1)[1].split("/")[0])
    # The port is closed now: connections are refused.
    api = TelegramApi(tg_settings(f"http://127.0.0.1:{port}"))
    box = Outbox(TelegramDestination(api, CHAT_ID, 5), tg_settings(f"http://127.0.0.1:{port}", max_attempts=2),
                 seed=3)
    with captured_logs("DEBUG") as logs:
        reply = await api.send_message(CHAT_ID, "hello", 2)
        box.start()
        box.put(ALERT)
        await wait_for(lambda: box.stats.failed == 1)
        await box.close(0)
        await api.close()
    assert not reply.ok and reply.status == 0 and "sendMessage" in reply.description
    assert BOT_TOKEN not in reply.description
    text = orjson.dumps(logs).decode()
    assert "alert_dropped" in text and BOT_TOKEN not in text and "TEST-token" not in text
    assert TelegramApi(tg_settings("https://x")).safe(f"GET /bot{BOT_TOKEN}/getMe") == "GET /bot<bot-token>/getMe"


async def test_an_outbox_to_telegram_waits_out_a_429_and_delivers() -> None:
    async with fake_bot_api() as fake:
        fake.send_script = [(429, b'{"ok":false,"error_code":429,"description":"Too Many Requests",'
                                  b'"parameters":{"retry_after":0}}'),
                            (500, b'{"ok":false,"error_code":500,"description":"Internal"}')]
        settings = tg_settings(fake.url)
        api = TelegramApi(settings)
        box = Outbox(TelegramDestination(api, CHAT_ID, 5), settings, seed=1)
        box.start()
        box.put(ALERT)
        await wait_for(lambda: box.stats.delivered == 1)
        await box.close(1)
        await api.close()
        assert len(fake.sent) == 3 and box.stats.retries == 2


class FakeService:
    """What the command loop calls on ``ControlService``, recording the acts."""

    def __init__(self) -> None:
        self.acts: list[tuple[str, str]] = []

    def status(self) -> dict[str, Any]:
        return {"mode": "paper", "trading_state": "ACTIVE", "state_reason": "", "risk_level": "LOW",
                "equity_inr": 1_000_000.0, "day_pnl_inr": -12.5, "open_positions": 1, "pending_approvals": 2,
                "health": {"ok": True, "failing": []}, "auto_execution": False}

    def positions(self) -> dict[str, Any]:
        return {"positions": [{"tradingsymbol": "NIFTY26D0126000CE", "quantity": 65, "average_price_inr": 123.45,
                               "last_price_inr": 130.0, "unrealized_inr": 425.75}],
                "realized_inr": 0.0, "unrealized_inr": 425.75, "charges_inr": 40.0, "equity_inr": 1_000_385.75,
                "day_pnl_inr": 385.75}

    async def halt(self, reason: str = "") -> dict[str, Any]:
        self.acts.append(("halt", reason))
        return {"detail": "trading is HALTED"}

    async def approve(self, ref: str) -> dict[str, Any]:
        self.acts.append(("approve", ref))
        if ref == "gone":
            raise Refused("gone is already expired: only a pending one can be decided")
        return {"message": f"the approved intent {ref} was approved by the risk gate"}


async def test_commands_answer_in_words() -> None:
    service = cast(ControlService, FakeService())
    status = await run_command(service, "/status@MyTraderBot")
    assert "trading ACTIVE" in status and "₹10,00,000.00" in status and "pending approvals 2" in status
    assert "semi-live" in status
    positions = await run_command(service, "/positions")
    assert "NIFTY26D0126000CE +65 @ ₹123.45 → ₹130.00, unrealized ₹425.75" in positions
    assert "charges ₹40.00" in await run_command(service, "/pnl")
    assert (await run_command(service, "/approve")).startswith("usage: /approve")
    assert "was approved by the risk gate" in await run_command(service, "/approve S12")
    assert await run_command(service, "/approve gone") == ("refused: gone is already expired: only a pending one "
                                                           "can be decided")
    assert (await run_command(service, "/halt going for lunch")).startswith("HALTED.")
    assert cast(FakeService, service).acts[-1] == ("halt", "halted from Telegram: going for lunch")
    assert "unknown command '/sell'" in await run_command(service, "/sell everything")


async def test_the_command_loop_takes_only_the_configured_chat() -> None:
    async with fake_bot_api() as fake:
        settings = tg_settings(fake.url)
        api = TelegramApi(settings)
        service = FakeService()
        slept: list[float] = []

        async def no_wait(seconds: float) -> None:
            slept.append(seconds)

        loop = TelegramCommands(api, CHAT_ID, cast(ControlService, service), timeout_s=5, poll_timeout_s=1,
                                sleep=no_wait)
        fake.command("/halt", chat_id=STRANGER_CHAT_ID, user_id=9)
        fake.command("/halt from an hour ago", date=int(time.time()) - 3_600)
        fake.updates.append({"update_id": fake.next_update_id, "message": "not an object"})
        fake.next_update_id += 1
        fake.updates.append({"no": "update_id"})
        fake.command("hello, no command")
        last = fake.command("/halt now")
        with captured_logs() as logs:
            assert await loop.poll_once() == 6
        assert loop.offset == last + 1
        assert service.acts == [("halt", "halted from Telegram: now")]
        assert loop.refused == 1 and loop.handled == 1
        [refused] = [line for line in logs if line["event"] == "telegram_command_refused"]
        assert (refused["chat_id"], refused["user_id"]) == (STRANGER_CHAT_ID, 9)
        answers = fake.texts()
        assert len(answers) == 2 and all(m["chat_id"] == CHAT_ID for m in fake.sent)
        assert "not carried out" in answers[0] and answers[1].startswith("HALTED.")
        # The next poll asks from the offset: nothing is carried out twice.
        assert await loop.poll_once() == 0 and fake.polls[-1]["offset"] == last + 1
        slept.clear()  # an empty answer sooner than MIN_EMPTY_POLL_S waited out the rest (tests/test_alerts_hostile.py)
        fake.poll_script = [(409, b'{"ok":false,"error_code":409,"description":"Conflict: terminated by other '
                                  b'getUpdates request"}'),
                            (429, b'{"ok":false,"error_code":429,"description":"Too Many Requests",'
                                  b'"parameters":{"retry_after":11}}'),
                            (200, b"{broken")]
        with captured_logs() as logs:
            for _ in range(3):
                assert await loop.poll_once() == 0
        assert slept[1] == 11 and len(slept) == 3 and loop.failures == 3
        assert [line["event"] for line in logs].count("telegram_poll_failed") == 3
        await api.close()


async def test_the_command_loop_task_polls_until_cancelled() -> None:
    async with fake_bot_api() as fake:
        api = TelegramApi(tg_settings(fake.url))
        service = FakeService()
        loop = TelegramCommands(api, CHAT_ID, cast(ControlService, service), timeout_s=5, poll_timeout_s=1)
        task = asyncio.create_task(loop.run())
        fake.command("/halt")
        await wait_for(lambda: len(fake.sent) == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.close()
        assert service.acts == [("halt", "halted from Telegram")]


async def test_the_webhook_signs_the_body_and_retries_only_what_may_succeed() -> None:
    async with webhook_sink() as sink:
        settings = AlertSettings(webhook_url=sink.url, webhook_secret="hook-secret", retry_base_seconds=0.01,
                                 timeout_seconds=5)
        dest = WebhookDestination(settings)
        sink.statuses = [500, 503]
        box = Outbox(dest, settings, seed=2)
        box.start()
        box.put(ALERT)
        await wait_for(lambda: box.stats.delivered == 1)
        assert len(sink.received) == 3
        headers, raw = sink.received[-1]
        assert headers[SIGNATURE_HEADER] == hmac.new(b"hook-secret", raw, hashlib.sha256).hexdigest()
        assert headers["Content-Type"] == "application/json"
        body = orjson.loads(raw)
        assert body == {"kind": "halted", "severity": "critical", "subject": "trading",
                        "text": "Trading HALTED: <kill switch> & more", "ts": ist_text(T0),
                        "ts_ns": T0, "repeats": 0, "fields": {"state": "HALTED"}}
        sink.statuses = [404]
        box.put(Alert("other", Severity.INFO, "x", "y", T0))
        await wait_for(lambda: box.stats.failed == 1)
        assert len(sink.received) == 4  # a 404 is not retried
        sink.statuses = [429]
        box.put(Alert("third", Severity.INFO, "x", "y", T0))
        await wait_for(lambda: box.stats.delivered == 2)
        await box.close(1)
        await dest.close()
        unsigned = WebhookDestination(AlertSettings(webhook_url=sink.url))
        assert (await unsigned.send(ALERT, 0)).outcome is Outcome.DELIVERED
        assert SIGNATURE_HEADER not in sink.received[-1][0]
        await unsigned.close()


async def test_a_black_hole_webhook_times_out_and_is_retried() -> None:
    async with black_hole() as url:
        settings = AlertSettings(webhook_url=url, timeout_seconds=0.2, retry_base_seconds=0.01, max_attempts=2)
        dest = WebhookDestination(settings)
        box = Outbox(dest, settings, seed=2)
        box.start()
        with captured_logs() as logs:
            box.put(ALERT)
            await wait_for(lambda: box.stats.failed == 1)
        await box.close(0)
        await dest.close()
    [retry] = [line for line in logs if line["event"] == "alert_retry"]
    assert retry["detail"] == "no answer within 0.2 s"
    assert "s3cr3t" not in str(logs)



def test_a_long_alert_is_cut_before_escaping_and_fits_one_message() -> None:
    long = Alert("broker_reject", Severity.WARNING, "x", '"<&>' * 1_000, T0)
    text = alert_html(long, 0)
    assert len(text) <= 4_096 and text.endswith("…")
    assert text.count("&quot;") == 150 and "&am…" not in text and not text.endswith("&…")


async def test_flatten_all_is_every_position() -> None:
    flattened: list[str | None] = []

    class Flat(FakeService):
        async def flatten(self, underlying: str | None = None) -> dict[str, Any]:
            flattened.append(underlying)
            return {"detail": "exits issued", "exits": 2}

    service = cast(ControlService, Flat())
    # Without the word "confirm" nothing happens: it says what it would do and how.
    assert await run_command(service, "/flatten") == ("This would exit every position the daemon holds at market. "
                                                      "To do it, send: /flatten confirm")
    assert "/flatten confirm BANKNIFTY" in await run_command(service, "/flatten BANKNIFTY")
    assert flattened == []
    assert await run_command(service, "/flatten confirm all") == "Flatten: exits issued (2 exit orders)"
    await run_command(service, "/flatten CONFIRM")
    await run_command(service, "/flatten confirm BANKNIFTY")
    assert flattened == [None, None, "BANKNIFTY"]
