"""A generic JSON webhook: one POST per alert.

Body: ``{"kind", "severity", "subject", "text", "ts", "ts_ns", "repeats", "fields"}`` (``ts`` in IST, ISO 8601).
With ``webhook_secret`` set, ``X-Trader-Signature`` carries the hex HMAC-SHA256 of the exact body bytes under the
secret, so the receiver can check the alert came from this daemon. 2xx = delivered; 429 and 5xx, a timeout or a
broken connection = retried; any other status = given up (the receiver refused it for good).

The URL may carry a secret in its path (chat-service hooks): it is never logged, and errors are reported by type.
"""

from __future__ import annotations

import hashlib
import hmac

import aiohttp
import orjson

from trader.alerts.outbox import DELIVERED, Outcome, SendResult
from trader.alerts.rules import Alert
from trader.market.calendar import ist_text
from trader.service_settings import AlertSettings

SIGNATURE_HEADER = "X-Trader-Signature"
MAX_ANSWER_READ = 1_024  # bytes of the receiver's answer read, for the log


def body(alert: Alert, repeats: int) -> bytes:
    return orjson.dumps({"kind": alert.kind, "severity": alert.severity.value, "subject": alert.subject,
                         "text": alert.text, "ts": ist_text(alert.ts_ns), "ts_ns": alert.ts_ns, "repeats": repeats,
                         "fields": dict(alert.fields)})


def signature(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def http_outcome(status: int, detail: str, retry_after_s: float | None = None) -> SendResult:
    if 200 <= status < 300:
        return DELIVERED
    if status == 429 or status >= 500:
        return SendResult(Outcome.RETRY, detail, retry_after_s)
    return SendResult(Outcome.GIVE_UP, detail)


class WebhookDestination:
    name = "webhook"

    def __init__(self, settings: AlertSettings) -> None:
        self._url = settings.webhook_url
        self._secret = settings.webhook_secret.get_secret_value()
        self._session: aiohttp.ClientSession | None = None

    async def send(self, alert: Alert, repeats: int) -> SendResult:
        payload = body(alert, repeats)
        headers = {"Content-Type": "application/json"}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, payload)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            # No redirects (a 3xx is a refusal): the alert goes to the configured URL only. Only the start of the
            # answer is read (it is shown in the log), however long it is.
            async with self._session.post(self._url, data=payload, headers=headers,
                                          allow_redirects=False) as response:
                text = (await response.content.read(MAX_ANSWER_READ)).decode("utf-8", "replace")[:200]
                retry_after = _retry_after(response.headers.get("Retry-After"))
                return http_outcome(response.status, f"HTTP {response.status}: {text}", retry_after)
        except aiohttp.ClientError as exc:  # its text may carry the URL: the type only
            return SendResult(Outcome.RETRY, f"connection failed ({type(exc).__name__})")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
