"""Telegram over the Bot API (aiohttp): alerts out with ``sendMessage``, operator commands in with ``getUpdates``.

The bot token is part of every request's URL path (``/bot<token>/<method>``), so no URL is ever logged: requests
are logged by method name, and errors by type with the token cut out of any text. Every Bot API answer is checked
(JSON object, ``ok``, ``result``); a malformed one is a failed call, never an exception in the daemon.

Commands (``/status /positions /pnl /approve <id> /reject <id> /halt [reason] /resume /flatten confirm [underlying]
/help``) are taken only from the configured ``telegram_chat_id``; a message from any other chat is ignored and
logged with its chat id. Each command acts through ``ControlService(app, source="telegram")``, exactly as the HTTP
API does, and is answered in the chat with a short text. Commands sent while the daemon was not running (older than
``STALE_COMMAND_S``) are not carried out: a /flatten from an hour ago is answered, not obeyed.
"""

from __future__ import annotations

import asyncio
import html
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from trader.alerts.outbox import DELIVERED, Outcome, SendResult
from trader.alerts.rules import Alert
from trader.control.service import ControlError
from trader.logging import get_logger
from trader.money import format_inr, to_paise
from trader.service_settings import AlertSettings

if TYPE_CHECKING:
    from trader.control.service import ControlService

log = get_logger("trader.telegram")

MAX_MESSAGE_CHARS = 4_096  # Telegram's limit per message
MAX_TEXT_CHARS = 600  # of an alert's text: escaped (at most 6 characters each, &quot;) it stays within 4,096
POLL_TIMEOUT_S = 25  # getUpdates long-poll: Telegram holds the request up to this long
STALE_COMMAND_S = 120.0
MAX_POLL_BACKOFF_S = 60.0
WHOAMI_EVERY_S = 60.0  # getMe is asked again this often while the bot's name is unknown
MAX_SEEN_UPDATES = 1_000  # update ids remembered against a replay
# A getUpdates that comes back empty sooner than this did not long-poll (a proxy, a server ignoring ``timeout``):
# the loop waits out the rest, so it never becomes a busy loop of requests on the event loop that trades.
MIN_EMPTY_POLL_S = 0.25
MIN_RETRY_AFTER_S = 1.0  # a 429 with retry_after 0 (or less) on getUpdates waits this long
# The largest Bot API answer read (getUpdates: at most 100 updates of 4,096 characters each); a longer one is a
# failed call, read no further: a broken or hostile endpoint cannot fill the daemon's memory.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
HELP = ("Commands: /status, /positions, /pnl, /approve <id>, /reject <id>, /halt [reason], /resume, "
        "/flatten confirm [underlying], /help")


@dataclass(frozen=True, slots=True)
class ApiReply:
    """One Bot API call's answer: ``ok`` with ``result``, or a failure (``status`` 0: no HTTP answer at all)."""

    ok: bool
    result: Any = None
    status: int = 0
    description: str = ""
    retry_after_s: float | None = None


class TelegramApi:
    def __init__(self, settings: AlertSettings) -> None:
        self._token = settings.telegram_bot_token.get_secret_value()
        self._root = settings.telegram_api_root
        self._session: aiohttp.ClientSession | None = None

    def safe(self, text: str) -> str:
        """``text`` with the bot token cut out (an exception's message may quote the URL)."""
        return text.replace(self._token, "<bot-token>") if self._token else text

    async def call(self, method: str, params: dict[str, Any], timeout_s: float) -> ApiReply:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self._root}/bot{self._token}/{method}"
        try:
            async with asyncio.timeout(timeout_s):
                # No redirects: the Bot API never sends one, and following it would hand the message (or take
                # commands) from another host.
                async with self._session.post(url, data=orjson.dumps(params), allow_redirects=False,
                                              headers={"Content-Type": "application/json"}) as response:
                    status = response.status
                    raw = await read_capped(response, MAX_ANSWER_BYTES)
        except TimeoutError:
            return ApiReply(False, description=f"{method}: no answer within {timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return ApiReply(False, description=f"{method}: {type(exc).__name__} {self.safe(str(exc))[:200]}")
        if raw is None:
            return ApiReply(False, status=status, description=f"{method}: HTTP {status}, an answer over "
                                                              f"{MAX_ANSWER_BYTES} bytes (not read)")
        return self._reply(method, status, raw)

    def _reply(self, method: str, status: int, raw: bytes) -> ApiReply:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return ApiReply(False, status=status, description=f"{method}: HTTP {status}, not JSON")
        if not isinstance(document, dict) or not isinstance(document.get("ok"), bool):
            return ApiReply(False, status=status, description=f"{method}: HTTP {status}, not a Bot API answer")
        description = self.safe(str(document.get("description", "")))[:200]  # it may quote the path
        if not document["ok"]:
            parameters = document.get("parameters")
            retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
            seconds = float(retry_after) if isinstance(retry_after, int | float) and retry_after >= 0 else None
            return ApiReply(False, status=status, description=f"{method}: HTTP {status} {description}",
                            retry_after_s=seconds)
        if "result" not in document:
            return ApiReply(False, status=status, description=f"{method}: HTTP {status}, ok without a result")
        return ApiReply(True, document["result"], status=status)

    async def send_message(self, chat_id: int, text: str, timeout_s: float, *, parse_html: bool = False) -> ApiReply:
        params: dict[str, Any] = {"chat_id": chat_id, "text": text[:MAX_MESSAGE_CHARS],
                                  "disable_web_page_preview": True}
        if parse_html:
            params["parse_mode"] = "HTML"
        return await self.call("sendMessage", params, timeout_s)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body of ``response``, or None (and the rest left unread) once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65_536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def alert_html(alert: Alert, repeats: int) -> str:
    """The alert as a Telegram HTML message: a bold title, the text (escaped), the repeat count."""
    body = alert.text if len(alert.text) <= MAX_TEXT_CHARS else alert.text[:MAX_TEXT_CHARS] + "…"
    text = f"<b>{html.escape(alert.title)}</b>\n{html.escape(body)}"  # cut before escaping: never inside an entity
    if repeats:
        text += f"\n<i>(+{repeats} more like this since the last one)</i>"
    return text


def send_outcome(reply: ApiReply) -> SendResult:
    if reply.ok:
        return DELIVERED
    if reply.status in {0, 200, 429} or reply.status >= 500:
        return SendResult(Outcome.RETRY, reply.description, reply.retry_after_s)
    return SendResult(Outcome.GIVE_UP, reply.description)  # 400 chat not found, 401 bad token, 403 blocked


class TelegramDestination:
    name = "telegram"

    def __init__(self, api: TelegramApi, chat_id: int, timeout_s: float) -> None:
        self.api = api
        self.chat_id = chat_id
        self.timeout_s = timeout_s

    async def send(self, alert: Alert, repeats: int) -> SendResult:
        reply = await self.api.send_message(self.chat_id, alert_html(alert, repeats), self.timeout_s,
                                            parse_html=True)
        return send_outcome(reply)


# -- commands --------------------------------------------------------------------------------------------------------
def _inr(rupees: Any) -> str:
    return format_inr(to_paise(rupees)) if isinstance(rupees, int | float) else "?"


def status_text(status: dict[str, Any]) -> str:
    reason = f" ({status['state_reason']})" if status.get("state_reason") else ""
    health = status.get("health", {})
    failing = health.get("failing", []) if isinstance(health, dict) else []
    return (f"{status['mode']} · trading {status['trading_state']}{reason} · risk {status['risk_level']}\n"
            f"equity {_inr(status['equity_inr'])} · day P&L {_inr(status['day_pnl_inr'])}\n"
            f"open positions {status['open_positions']} · pending approvals {status['pending_approvals']}\n"
            f"health: {'ok' if not failing else 'failing ' + ', '.join(failing)} · "
            f"{'auto' if status['auto_execution'] else 'semi-live'}")


def positions_text(answer: dict[str, Any]) -> str:
    rows = answer["positions"]
    if not rows:
        return f"No open positions. Day P&L {_inr(answer['day_pnl_inr'])}."
    lines = [f"{row['tradingsymbol']} {row['quantity']:+d} @ {_inr(row['average_price_inr'])} → "
             f"{_inr(row['last_price_inr'])}, unrealized {_inr(row['unrealized_inr'])}" for row in rows[:30]]
    if len(rows) > 30:
        lines.append(f"… and {len(rows) - 30} more")
    lines.append(f"Day P&L {_inr(answer['day_pnl_inr'])}")
    return "\n".join(lines)


def pnl_text(answer: dict[str, Any]) -> str:
    return (f"Day P&L {_inr(answer['day_pnl_inr'])}\nrealized {_inr(answer['realized_inr'])} · unrealized "
            f"{_inr(answer['unrealized_inr'])} · charges {_inr(answer['charges_inr'])}\n"
            f"equity {_inr(answer['equity_inr'])}")


async def run_command(service: ControlService, text: str) -> str:
    """Carry out one command line and return the answer to send; never raises for an operator's mistake."""
    word, _, rest = text.strip().partition(" ")
    command = word.split("@", 1)[0].lower()  # "/status@MyTraderBot" in a group
    argument = rest.strip()
    try:
        if command in ("/help", "/start"):
            return HELP
        if command == "/status":
            return status_text(service.status())
        if command == "/positions":
            return positions_text(service.positions())
        if command == "/pnl":
            return pnl_text(service.positions())
        if command in ("/approve", "/reject"):
            if not argument:
                return f"usage: {command} <intent or signal id> (/status shows how many are pending)"
            if command == "/approve":
                answer = await service.approve(argument)
                return str(answer.get("message") or f"approved {argument}")
            answer = await service.reject(argument, reason="rejected from Telegram")
            return f"rejected {argument}: {answer.get('detail', '')}".rstrip(": ")
        if command == "/halt":
            answer = await service.halt(f"halted from Telegram{': ' + argument if argument else ''}")
            return f"HALTED. {answer['detail']}"
        if command == "/resume":
            answer = await service.resume()
            return f"Resumed. {answer['detail']}"
        if command == "/flatten":
            # A tap on the bot's command menu sends "/flatten" at once: exiting every position takes a second word,
            # as the dashboard's Flatten takes a confirmation.
            confirm, _, target = argument.partition(" ")
            target = target.strip()
            if confirm.lower() != "confirm":
                which = f"every {argument} position" if argument and argument.lower() != "all" else \
                    "every position the daemon holds"
                again = f"/flatten confirm {argument}".rstrip()
                return f"This would exit {which} at market. To do it, send: {again}"
            answer = await service.flatten(None if target.lower() in ("", "all") else target)
            return f"Flatten: {answer['detail']} ({answer['exits']} exit orders)"
    except ControlError as exc:
        return f"refused: {exc.message}"
    return f"unknown command {command!r}. {HELP}"


class TelegramCommands:
    """The getUpdates long-poll loop: commands from the configured chat, carried out one at a time."""

    def __init__(self, api: TelegramApi, chat_id: int, service: ControlService, *, timeout_s: float, seed: int = 0,
                 poll_timeout_s: int = POLL_TIMEOUT_S, wall_s: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self._monotonic = monotonic
        self.chat_id = chat_id
        self.service = service
        self.timeout_s = timeout_s
        self.poll_timeout_s = poll_timeout_s
        self._wall_s = wall_s
        self._sleep = sleep
        self._random = random.Random(seed)
        self.offset = 0
        self.handled = 0
        self.refused = 0
        self.failures = 0
        self.username: str | None = None  # the bot's own, from getMe: "/halt@OtherBot" is not for this bot
        self._seen_ids: set[int] = set()  # update ids already read: a replayed update is not carried out twice
        self._seen_order: deque[int] = deque()
        self._whoami_at: float | None = None

    async def whoami(self) -> None:
        """Learn the bot's username (getMe), to tell "/halt@ThisBot" from "/halt@OtherBot" in a group. Until it is
        known, a command addressed to any bot by name is not carried out."""
        reply = await self.api.call("getMe", {}, self.timeout_s)
        result = reply.result if reply.ok else None
        username = result.get("username") if isinstance(result, dict) else None
        if isinstance(username, str) and username:
            self.username = username
        else:
            log.warning("telegram_getme_failed", detail=reply.description or "no username",
                        why="commands addressed /cmd@SomeBot are ignored until the bot's name is known")

    async def run(self) -> None:
        while True:
            if self.username is None and (self._whoami_at is None
                                          or self._monotonic() - self._whoami_at >= WHOAMI_EVERY_S):
                self._whoami_at = self._monotonic()  # at most once a minute while it fails
                try:
                    await self.whoami()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("telegram_getme_failed", detail=f"{type(exc).__name__}")
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never into the daemon: logged, and the loop goes on after a pause
                self.failures += 1
                log.error("telegram_poll_error", error=type(exc).__name__, detail=self.api.safe(str(exc))[:200])
                await self._sleep(self._backoff(None))

    def _backoff(self, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, MIN_RETRY_AFTER_S), MAX_POLL_BACKOFF_S * 10)
        step = min(2.0 ** min(self.failures, 6), MAX_POLL_BACKOFF_S)
        return step * (1.0 + 0.25 * self._random.random())

    async def poll_once(self) -> int:
        """One getUpdates call; handles what it returned. Returns the number of updates read."""
        started = self._monotonic()
        reply = await self.api.call("getUpdates", {"offset": self.offset, "timeout": self.poll_timeout_s,
                                                   "allowed_updates": ["message"]},
                                    self.poll_timeout_s + self.timeout_s)
        if not reply.ok or not isinstance(reply.result, list):
            self.failures += 1
            log.warning("telegram_poll_failed", detail=reply.description or "result is not a list",
                        failures=self.failures)
            await self._sleep(self._backoff(reply.retry_after_s))
            return 0
        self.failures = 0
        if not reply.result:
            early = MIN_EMPTY_POLL_S - (self._monotonic() - started)
            if early > 0:
                await self._sleep(early)
            return 0
        for update in reply.result:
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                log.warning("telegram_update_malformed")
                continue
            update_id = update["update_id"]
            self.offset = max(self.offset, update_id + 1)
            if update_id in self._seen_ids:
                log.warning("telegram_update_replayed", update_id=update_id, why="already read: not carried out again")
                continue
            self._remember(update_id)
            await self._on_update(update)
        return len(reply.result)

    def _remember(self, update_id: int) -> None:
        self._seen_ids.add(update_id)
        self._seen_order.append(update_id)
        if len(self._seen_order) > MAX_SEEN_UPDATES:
            self._seen_ids.discard(self._seen_order.popleft())

    def _for_another_bot(self, command: str) -> bool:
        """``/halt@OtherBot``: a command addressed to another bot in the same group (or to any bot by name while
        this bot's own name is unknown)."""
        _, at, addressee = command.partition("@")
        return bool(at) and (self.username is None or addressee.lower() != self.username.lower())

    async def _on_update(self, update: dict[str, Any]) -> None:
        message = update.get("message")
        if not isinstance(message, dict):
            return
        chat = message.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        sender = message.get("from")
        user_id = sender.get("id") if isinstance(sender, dict) else None
        text = message.get("text")
        if chat_id != self.chat_id:
            self.refused += 1
            log.warning("telegram_command_refused", chat_id=chat_id, user_id=user_id,
                        why="not the configured alerts.telegram_chat_id: ignored")
            return
        if not isinstance(text, str) or not text.startswith("/"):
            return
        sent_at = message.get("date")
        command = text.split(maxsplit=1)[0]
        if self._for_another_bot(command):
            log.info("telegram_command_not_ours", command=command[:64], chat_id=chat_id, user_id=user_id)
            return
        if isinstance(sent_at, int | float) and self._wall_s() - sent_at > STALE_COMMAND_S:
            log.warning("telegram_command_stale", command=command, age_s=round(self._wall_s() - sent_at))
            await self._answer(f"{command} was sent {self._wall_s() - sent_at:.0f} s ago, while the daemon was not "
                               "listening: not carried out. Send it again if you still mean it.")
            return
        log.info("telegram_command", command=command, chat_id=chat_id, user_id=user_id)
        try:
            answer = await run_command(self.service, text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("telegram_command_failed", command=command)
            answer = f"{command} failed inside the daemon ({type(exc).__name__}); the log has the details"
        self.handled += 1
        await self._answer(answer)

    async def _answer(self, text: str) -> None:
        reply = await self.api.send_message(self.chat_id, text, self.timeout_s)
        if not reply.ok:
            log.warning("telegram_answer_failed", detail=reply.description)
