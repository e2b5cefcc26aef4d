"""Synchronous client of the control API, for the ``trader status|order|halt|...`` commands (no event loop).

One request per call: JSON out and in (orjson), a timeout, no proxy (``http_proxy`` in the shell would otherwise
carry the token to the proxy) and no redirect (a redirect would carry it to another host). Every answer becomes an
``Answer`` or one ``ClientError`` subclass whose ``exit_code`` is the CLI's: 1 refused / not found / token refused /
daemon failure, 2 a bad request, 3 the daemon not reachable. Messages never contain the token.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import orjson

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

START_HINT = "is the daemon running? start it with `make run` / `trader run`, or pass --url"
DEFAULT_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 32 * 1024 * 1024


def _join(*parts: object) -> str:
    return " ".join(str(part) for part in parts if part not in (None, ""))


class ClientError(Exception):
    """A call that did not succeed; ``message`` is for a human, ``document`` the server's JSON answer if any."""

    exit_code = EXIT_REFUSED
    code = "error"

    def __init__(self, message: str, *, status: int = 0, document: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.document = document

    def as_document(self) -> dict[str, Any]:
        """The server's error answer, or one in the same shape for a failure on this side (``--json``)."""
        if self.document is not None:
            return self.document
        return {"error": {"code": self.code, "message": self.message}}


class Unreachable(ClientError):
    """Connection refused, timed out, name not found, connection dropped: exit 3."""

    exit_code = EXIT_UNREACHABLE
    code = "unreachable"


class TokenRefused(ClientError):
    """401: the token is missing or not the daemon's."""

    code = "unauthorized"


class BadRequest(ClientError):
    """400 (or 413): the request itself is wrong; ``field`` names the part the server pointed at."""

    exit_code = EXIT_USAGE
    code = "bad_request"

    def __init__(self, message: str, *, field: str = "", status: int = 0,
                 document: dict[str, Any] | None = None) -> None:
        super().__init__(message, status=status, document=document)
        self.field = field


class Refused(ClientError):
    """404 / 409 (and any other 4xx): not found, refused by a risk check, already decided; ``check`` names it."""

    code = "refused"

    def __init__(self, message: str, *, check: str = "", status: int = 0,
                 document: dict[str, Any] | None = None) -> None:
        super().__init__(message, status=status, document=document)
        self.check = check


class ServerFailed(ClientError):
    """5xx, or an answer that is not the control API's JSON."""

    code = "internal"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    document: dict[str, Any] = field(default_factory=dict)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(  # noqa: PLR0917 - urllib's signature
            self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str,
    ) -> urllib.request.Request | None:
        return None  # the 3xx is then raised as an HTTPError and reported as an unexpected answer


class ControlClient:
    """``base_url`` like ``http://127.0.0.1:8780``; ``token`` may be "" (then no Authorization header is sent);
    ``token_source`` says where it was read, for the message when the daemon refuses it."""

    def __init__(self, base_url: str, token: str, *, token_source: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.token_source = token_source
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def get(self, path: str, *, timeout_s: float | None = None) -> Answer:
        return self._call("GET", path, None, timeout_s)

    def post(self, path: str, body: dict[str, Any] | None = None, *, timeout_s: float | None = None) -> Answer:
        return self._call("POST", path, body, timeout_s)

    def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float | None) -> Answer:
        """One request, given up after ``timeout`` in all: urllib's timeout bounds each socket read, so a server
        that trickles its answer a byte at a time would hold the command for ever. The request runs in a daemon
        thread (left behind if it hangs: the command exits) and counts as a timeout when it has not finished."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        outcome: list[Answer | ClientError] = []

        def exchange() -> None:
            try:
                outcome.append(self._exchange(method, path, body, timeout))
            except ClientError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=exchange, name=f"control-{method.lower()}", daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise self._unreachable(TimeoutError(), method, self.base_url + path, timeout)
        if isinstance(outcome[0], ClientError):
            raise outcome[0]
        return outcome[0]

    def _exchange(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Answer:
        url = self.base_url + path
        data = orjson.dumps(body) if body else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                status = int(response.status)
                raw = response.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            try:
                raw = exc.read(MAX_ANSWER_BYTES)
            except (OSError, http.client.HTTPException):
                raw = b""
            raise self._error(int(exc.code), raw, method, path) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason, method, url, timeout) from None
        except (OSError, http.client.HTTPException) as exc:  # a timeout or a dropped connection while reading
            raise self._unreachable(exc, method, url, timeout) from None
        return Answer(status, self._document(status, raw, method, path))

    # -- mapping answers and failures to errors ---------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _scrubbed(self, value: Any) -> Any:
        """The answer with the token masked in every text and key: whatever listens on the URL was sent the token,
        and what it answers is printed (tables, ``--json``), so an echo of it must not reach the screen or a log."""
        if not self._token:
            return value
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self._scrubbed(item) for item in value]
        if isinstance(value, dict):
            return {self._scrub(str(key)): self._scrubbed(item) for key, item in value.items()}
        return value

    def _unreachable(self, reason: object, method: str, url: str, timeout: float) -> Unreachable:
        if isinstance(reason, TimeoutError | socket.timeout):
            what = f"no answer from {url} within {timeout:g} s"
            if method != "GET":
                what += ("; the daemon may still carry the request out: look with `trader status` / `trader orders`"
                         " before you repeat it")
            return Unreachable(self._scrub(f"{what} ({START_HINT})"))
        if isinstance(reason, socket.gaierror):
            why = f"the host name could not be resolved ({reason.strerror or reason})"
        elif isinstance(reason, ConnectionRefusedError):
            why = "connection refused"
        else:
            why = str(reason) or type(reason).__name__
        return Unreachable(self._scrub(f"cannot reach the daemon at {url}: {why}; {START_HINT}"))

    def _document(self, status: int, raw: bytes, method: str, path: str) -> dict[str, Any]:
        try:
            document = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise ServerFailed(self._scrub(
                f"{method} {self.base_url}{path} answered {status} with something that is not the control API's "
                "JSON: is another program listening there, or a daemon of another version?"), status=status)
        scrubbed: dict[str, Any] = self._scrubbed(document)
        return scrubbed

    def _error(self, status: int, raw: bytes, method: str, path: str) -> ClientError:
        if 300 <= status < 400:
            return ServerFailed(f"{method} {self.base_url}{path} answered a redirect ({status}); the control API "
                                "never redirects: is another program listening there?", status=status)
        try:
            document = self._document(status, raw, method, path)
        except ServerFailed as exc:
            if status == 401:  # an auth middleware that does not answer JSON: still a refused token
                document = {}
            elif status >= 500:
                return ServerFailed(f"the daemon failed ({status}) on {method} {path}", status=status)
            else:
                return exc
        error = document.get("error")
        detail = error if isinstance(error, dict) else {}
        message = self._scrub(str(detail.get("message") or "").strip())
        field_name = str(detail.get("field") or "")
        check = str(detail.get("check") or "")
        if status == 401:
            return TokenRefused(self._token_refused(), status=status, document=document)
        if status in (400, 413, 422):
            # The daemon's own messages start with the field ("lots: must be ..."): name it once.
            where = f"{field_name}: " if field_name and not message.startswith(f"{field_name}:") else ""
            kind = "request too large" if status == 413 else "bad request"
            return BadRequest(f"{kind}: {where}{message or 'the daemon gave no reason'}", field=field_name,
                              status=status, document=document)
        if 400 <= status < 500:
            if status == 404:
                text = f"not found: {message or path}"
            else:
                text = f"refused: {message or 'the daemon gave no reason'}"
            if check:
                text += f" (risk check: {check})"
            return Refused(text, check=check, status=status, document=document)
        code = str(detail.get("code") or "")
        label = "the daemon is not ready" if status == 503 else f"the daemon failed ({_join(status, code)})"
        return ServerFailed(f"{label}: {message or method + ' ' + path}", status=status, document=document)

    def _token_refused(self) -> str:
        if not self._token:
            return (f"the daemon wants a token and the CLI found none: {self.token_source}. The daemon's token is "
                    "control.token (TRADER_CONTROL__TOKEN) or the file <data_dir>/control_token it creates on its "
                    "first start; run the CLI with the same settings or pass --token-file PATH")
        return (f"the token was refused: the CLI read it from {self.token_source}. It must be the daemon's: the same "
                "control.token / TRADER_CONTROL__TOKEN, or its <data_dir>/control_token file (pass --token-file "
                "PATH)")
