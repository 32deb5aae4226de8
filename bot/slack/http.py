"""HTTP mode: `POST /slack/events` (Bolt, behind our own signature check) and `GET /healthz`,
served by waitress with a pool of threads (Bolt's own `app.start()` serves one request at a time).

The signature is checked here, before Bolt: a forged, stale (> 5 minutes) or malformed request gets
401 and one log line without its body (Bolt would log the rejected body, and a malformed timestamp
header would make its verifier raise).

Every request is one log line (`keepwell.http`): method, path, status, milliseconds to the answer
(for Slack, the acknowledgement: the work itself runs afterwards) and, for a Slack request, what it is
(`request_summary`). Never its body: no text, tokens, signatures or response URLs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.logs import fields

log = logging.getLogger("keepwell.http")
MAX_BODY = 1 << 20  # Slack's payloads are far smaller
StartResponse = Callable[..., Any]
_ID = re.compile(r"[A-Za-z0-9_./:#-]{1,100}")  # what an id, a type or a command name looks like
REJECTED = "rejected a request to /slack/events: invalid, stale or missing signature"


def _json(start_response: StartResponse, status: str, data: dict[str, Any]) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def signature_ok(verifier: SignatureVerifier, body: bytes, timestamp: str | None, signature: str | None,
                 now: float | None = None) -> bool:
    """Slack's v0 signature over the raw body, within 5 minutes; any malformed header is just False."""
    if not timestamp or not signature or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs((now if now is not None else time.time()) - int(timestamp)) > 300:
        return False
    try:
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (ValueError, TypeError):
        return False


def without_payload_word(body: str) -> str:
    """A form body whose text merely mentions "payload", with that word percent-encoded.

    Bolt reads any form body containing "payload" as an interactive payload, and one without a
    `payload` field as empty: `/keepwell note ACME payload failed` reached the app as nothing. Encoding
    the word's first letter (`%70ayload`) keeps what the form says and leaves Bolt's check nothing to
    find. JSON bodies, real interactive payloads and every other body are returned as they are."""
    if "payload" not in body or body.startswith("{"):
        return body
    if "payload" in dict(parse_qsl(body, keep_blank_values=True)):
        return body
    return body.replace("payload", "%70ayload")


def _id(value: Any) -> str | None:
    """An identifier worth logging: a short string of id characters, else nothing."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


_KINDS = {  # payload type → (kind, where its ids are)
    "block_actions": ("action", "actions"),
    "view_submission": ("view", "view"), "view_closed": ("view", "view"),
    "block_suggestion": ("options", "action_id"),
    "shortcut": ("shortcut", "callback_id"), "message_action": ("shortcut", "callback_id"),
}


def request_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a Slack request is, from the body Bolt parsed: its kind (command, action, event, view,
    options, shortcut), its type and the ids of what it concerns. Identifiers only, never text."""
    payload_type = _id(body.get("type"))
    if "command" in body:  # a slash command: form fields, no "type"
        return {"kind": "command", "type": _id(body.get("command"))}
    if payload_type == "event_callback":
        event = body.get("event")
        return {"kind": "event", "type": _id(event.get("type") if isinstance(event, Mapping) else None)}
    if payload_type not in _KINDS:
        return {"kind": payload_type or "other"}  # url_verification, app_rate_limited …
    kind, where = _KINDS[payload_type]
    found = body.get(where)
    if where == "actions":
        ids = [a.get("action_id") for a in found if isinstance(a, Mapping)] if isinstance(found, list) else []
    elif where == "view":
        ids = [found.get("callback_id")] if isinstance(found, Mapping) else []
    else:
        ids = [found]
    named = [i for i in (_id(x) for x in ids[:5]) if i]
    return {"kind": kind, "type": payload_type, **({"ids": named} if named else {})}


class Health:
    """`/healthz`'s answer: the database ping, at most one at a time.

    A health check that hangs on an unreachable database must not tie up the server's threads: while
    one ping is under way, other checks get the last answer, or 'unreachable' once the ping has taken
    longer than `patience` seconds.
    """

    def __init__(self, ping: Callable[[], bool], patience: float = 5.0) -> None:
        self.ping = ping
        self.patience = patience
        self.lock = threading.Lock()
        self.last = False
        self.since: float | None = None

    def __call__(self) -> bool:
        if not self.lock.acquire(blocking=False):
            since = self.since
            return self.last and (since is None or time.monotonic() - since < self.patience)
        try:
            self.since = time.monotonic()
            try:
                self.last = bool(self.ping())
            except Exception:
                self.last = False
            return self.last
        finally:
            self.since = None
            self.lock.release()


@dataclass
class RequestLine:
    """The log line of one request, filled in while it is answered."""

    status: int = 500  # until the answer says otherwise (an exception escaping is a 500)
    level: int | None = None  # None: INFO, or ERROR for a 5xx
    message: str = "request"
    slack: dict[str, Any] = field(default_factory=dict)

    def write(self, method: str, path: str, started: float, to: logging.Logger = log) -> None:
        level = self.level
        if level is None:
            level = logging.ERROR if self.status >= 500 else logging.INFO
        if to.isEnabledFor(level):
            to.log(level, self.message, extra=fields(
                method=method[:10], path=path[:100], status=self.status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                **{k: v for k, v in self.slack.items() if v is not None}))


class SlackWSGI:
    """The WSGI application of `keepwell serve`."""

    def __init__(self, app: App, signing_secret: str, healthy: Callable[[], bool]) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret)
        self.healthy = Health(healthy)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        line = RequestLine()

        def respond(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            line.status = int(status.split(" ", 1)[0])
            return start_response(status, headers, *exc_info)

        try:
            return self._answer(environ, path, method, respond, line)
        finally:
            line.write(method, path, started)

    def _answer(self, environ: dict[str, Any], path: str, method: str, respond: StartResponse,
                line: RequestLine) -> Iterable[bytes]:
        if path == "/healthz" and method in ("GET", "HEAD"):
            ok = self.healthy()
            line.level = logging.DEBUG if ok else logging.WARNING  # load balancers ask every few seconds
            return _json(respond, "200 OK" if ok else "503 Service Unavailable",
                         {"ok": ok, "database": "reachable" if ok else "unreachable"})
        if path != "/slack/events":
            return _json(respond, "404 Not Found", {"error": "not found"})
        if method != "POST":
            return _json(respond, "405 Method Not Allowed", {"error": "POST only"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return _json(respond, "413 Content Too Large", {"error": "request too large"})
        body = environ["wsgi.input"].read(length) if length else b""
        if not signature_ok(self.verifier, body, environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
                            environ.get("HTTP_X_SLACK_SIGNATURE")):
            line.level, line.message = logging.WARNING, REJECTED
            return _json(respond, "401 Unauthorized", {"error": "invalid request"})
        # what Bolt's WSGI adapter does, keeping the parsed request for the log line
        http = WsgiHttpRequest(environ)
        text, headers = body.decode("utf-8", errors="replace"), http.get_headers()
        safe = without_payload_word(text)
        if safe is not text:  # the same request, re-signed for Bolt's own check (ours passed above)
            headers["x-slack-signature"] = self.verifier.generate_signature(
                timestamp=environ["HTTP_X_SLACK_REQUEST_TIMESTAMP"], body=safe) or ""
        request = BoltRequest(body=safe, query=http.query_string, headers=headers)
        line.slack = {**request_summary(request.body), "team": _id(request.context.team_id)}
        retry = environ.get("HTTP_X_SLACK_RETRY_NUM", "")
        if retry.isdigit() and len(retry) < 4:
            line.slack["retry"] = int(retry)
        answer = self.app.dispatch(request)
        response = WsgiHttpResponse(status=answer.status, headers=answer.headers, body=answer.body)
        respond(response.status, response.get_headers())
        return response.get_body()


def serve(wsgi: SlackWSGI, host: str, port: int, threads: int = 8) -> None:
    from waitress import serve as waitress_serve

    waitress_serve(wsgi, host=host, port=port, threads=threads, ident="keepwell",
                   channel_timeout=30, connection_limit=200, clear_untrusted_proxy_headers=True)
