"""A fake Slack Web API that speaks real HTTP on 127.0.0.1, for tests.

Point the real clients at it::

    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert slack.calls_to("chat.postMessage")[0].params["text"] == "hi"

Besides ``/api/<method>`` the server answers ``/response/<name>`` (Slack's ``response_url`` for slash
commands and interactions, recorded in ``responses``) and ``/upload/<file_id>`` (the upload URL handed
out by ``files.getUploadURLExternal``, recorded in ``uploads``). A ``files.completeUploadExternal`` that
succeeds adds one ``SharedFile`` per file to ``shared``: where it went, under which title, and its bytes.

Any method can be given an answer of its own with ``answer`` (tests/fakes/socket_mode.py answers
``apps.connections.open`` that way).

Fault injection (``rate_limit``, ``fail``, ``stall``) is queued per key and consumed one call at a time,
in the order it was registered; the keys are Web API method names plus ``"response"`` (posts to a
response_url) and ``"upload"`` (posts to an upload URL).
"""

from __future__ import annotations

import contextlib
import copy
import email.parser
import email.policy
import json
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Literal, overload
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.loopback import LoopbackFake, LoopbackHandler

__all__ = ["AUTH_TEST", "DEFAULT_USERS", "Call", "FakeSlack", "Response", "SharedFile"]

# Parameters that slack_sdk sends as JSON strings when it form-encodes a request; decoded in Call.params.
JSON_PARAMS = frozenset({"blocks", "view", "attachments", "files", "metadata"})

AUTH_TEST: dict[str, Any] = {
    "ok": True,
    "url": "https://fake.slack.test/",
    "team": "Fake",
    "user": "keepwell",
    "team_id": "T0FAKE",
    "user_id": "U0BOT",
    "bot_id": "B0BOT",
}

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "U0123ABCD": {
        "id": "U0123ABCD",
        "team_id": "T0FAKE",
        "name": "ana",
        "real_name": "Ana Lopez",
        "deleted": False,
        "is_bot": False,
        "tz": "America/New_York",
        "profile": {"email": "ana@example.com", "real_name": "Ana Lopez", "display_name": "ana"},
    },
}

_TS_BASE_MICROS = 1_700_000_000_000_000


@dataclass(frozen=True)
class Call:
    """One Web API call as the fake received it."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass(frozen=True)
class Response:
    """One POST to a response_url (``/response/<name>``)."""

    name: str
    payload: dict[str, Any]
    at: float
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SharedFile:
    """One file whose upload was completed (files.completeUploadExternal), as a user would see it."""

    id: str
    filename: str
    title: str
    content: bytes
    channels: list[str]
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass(frozen=True)
class _Fault:
    kind: Literal["rate_limit", "fail", "stall"]
    status: int = 200
    error: str | None = None
    retry_after: int = 1
    seconds: float = 0.0


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
        return cls(status, json.dumps(data).encode(), headers=headers or {})

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> _Reply:
        return cls(status, text.encode(), content_type=content_type)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: keep it, don't print it
        self.fake.errors.append(traceback.format_exc())


class _Handler(LoopbackHandler):
    server_version = "FakeSlack/1.0"
    server: _Server

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = self.server.fake._handle(self.path, headers, body)
        except Exception:
            self.server.fake.errors.append(traceback.format_exc())
            reply = _Reply.text("fake slack crashed; see FakeSlack.errors", status=500)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. timed out on a stall)
            self.close_connection = True


def _decode_json_params(params: dict[str, Any]) -> dict[str, Any]:
    for key in JSON_PARAMS:
        value = params.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    out: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        raw = part.get_payload(decode=True)
        payload = raw if isinstance(raw, bytes) else b""
        out[str(name)] = payload if part.get_filename() else payload.decode("utf-8", "replace")
    return out


def _parse_payload(query: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """Merge query string and body (JSON, form or multipart) into one dict, as Slack does."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    content_type = headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if body:
        if media == "application/json" or (not media and body.lstrip()[:1] == b"{"):
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("JSON body is not an object")
            params.update(data)
        elif media == "multipart/form-data":
            params.update(_parse_multipart(content_type, body))
        else:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    return _decode_json_params(params)


def _first_user(users_param: Any) -> str:
    if isinstance(users_param, list):
        return str(users_param[0]) if users_param else ""
    return str(users_param or "").split(",")[0].strip()


class FakeSlack(LoopbackFake):
    """A Slack Web API (and response_url endpoint) on 127.0.0.1 for tests. Use as a context manager.

    ``users`` maps user id to a Slack user object (``id`` is filled in when missing); when omitted,
    ``DEFAULT_USERS`` (U0123ABCD, Ana Lopez, ana@example.com). ``channels``, when given, is the set of
    channel ids the bot is a member of: chat.*, conversations.info and file shares to any other
    channel answer ``channel_not_found`` (DM ids starting with "D" and user ids are always accepted).
    ``fake.channels`` is the live set, so a test can ``discard`` a channel mid-test.
    """

    def __init__(
        self,
        *,
        users: dict[str, dict[str, Any]] | None = None,
        channels: set[str] | None = None,
    ) -> None:
        super().__init__()
        source = DEFAULT_USERS if users is None else users
        self.users: dict[str, dict[str, Any]] = {
            uid: {"id": uid, **copy.deepcopy(user)} for uid, user in source.items()
        }
        self.channels: set[str] | None = set(channels) if channels is not None else None
        self.calls: list[Call] = []
        self.responses: list[Response] = []
        self.uploads: dict[str, bytes] = {}
        self.shared: list[SharedFile] = []
        self.errors: list[str] = []  # tracebacks of requests the fake itself failed to handle

        self._faults: dict[str, deque[_Fault]] = {}
        self._counters: dict[str, int] = {}
        self._upload_names: dict[str, str] = {}
        self._answers: dict[str, Callable[[Call], dict[str, Any]]] = {}
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": lambda p: dict(AUTH_TEST),
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "views.publish": self._views,
            "views.open": self._views,
            "views.update": self._views,
            "views.push": self._views,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    # ------------------------------------------------------------------ lifecycle

    name = "fake-slack"

    def _make_server(self) -> ThreadingHTTPServer:
        return _Server(self)


    @property
    def api_url(self) -> str:
        """What ``WebClient(base_url=...)`` / SLACK_API_URL take, trailing slash included."""
        return f"{self.base_url}/api/"

    def response_url(self, name: str = "r1") -> str:
        """A response_url whose posts are recorded in ``responses`` under ``name``."""
        return f"{self.base_url}/response/{name}"

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self, method_or_response: Literal["response"], count: int = 1, timeout: float = 5.0
    ) -> list[Response]: ...

    @overload
    def wait_for(self, method_or_response: str, count: int = 1, timeout: float = 5.0) -> list[Call]: ...

    def wait_for(
        self, method_or_response: str, count: int = 1, timeout: float = 5.0
    ) -> list[Call] | list[Response]:
        """Block until ``count`` calls to the method (or, for "response", response_url posts) arrived.

        Returns every matching call/response so far (at least ``count``). A call counts as soon as its
        request arrived, before the fake answered it. Raises AssertionError listing what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got: list[Call] | list[Response]
                if method_or_response == "response":
                    got = list(self.responses)
                else:
                    got = [c for c in self.calls if c.method == method_or_response]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._timeout_message(method_or_response, count, timeout, len(got)))
                self._cond.wait(remaining)

    def wait_for_response(self, name: str, timeout: float = 5.0) -> Response:
        """Block until the response_url ``name`` (see `response_url`) was posted to; the first post."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.responses:
                    if r.name == name:
                        return r
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"nothing posted to response_url {name!r} within {timeout:g} s")
                self._cond.wait(remaining)

    def _timeout_message(self, what: str, count: int, timeout: float, got: int) -> str:
        def short(value: Any) -> str:
            text = repr(value)
            return text if len(text) <= 200 else text[:197] + "..."

        calls = [f"  {c.method} {short(c.params)}" for c in self.calls[-20:]]
        responses = [f"  {r.name} {short(r.payload)}" for r in self.responses[-20:]]
        label = "response_url post" if what == "response" else what
        lines = [
            f"FakeSlack: waited {timeout:g}s for {count} {label} call(s), got {got}.",
            f"Web API calls that did arrive ({len(self.calls)}, last 20):",
            *(calls or ["  (none)"]),
            f"response_url posts ({len(self.responses)}, last 20):",
            *(responses or ["  (none)"]),
        ]
        if self.errors:
            lines += ["Fake errors:", *self.errors[-3:]]
        return "\n".join(lines)

    # ------------------------------------------------------------------ answers of a test's own

    def answer(self, method: str, reply: Callable[[Call], dict[str, Any]]) -> None:
        """Answer ``method`` from now on with ``reply(call)``, a Slack answer (``{"ok": True, ...}``).
        Replaces the built-in answer, if any; faults (``fail``, ``rate_limit``, ``stall``) still apply."""
        with self._cond:
            self._answers[method] = reply

    # ------------------------------------------------------------------ fault injection

    def _queue(self, key: str, fault: _Fault, times: int) -> None:
        with self._cond:
            self._faults.setdefault(key, deque()).extend([fault] * times)

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls get HTTP 429, ``Retry-After: retry_after`` and error "ratelimited"."""
        self._queue(method, _Fault("rate_limit", status=429, retry_after=retry_after), times)

    def fail(self, method: str, *, status: int = 500, error: str | None = None, times: int = 1) -> None:
        """The next ``times`` calls fail.

        Without ``error``: HTTP ``status`` with an HTML body (what a Slack outage looks like). With
        ``error``: ``{"ok": false, "error": error}`` with HTTP 200 (Slack's normal way to fail) when
        ``status`` is left at its default, or with the given ``status`` otherwise.
        """
        http_status = status if error is None or status != 500 else 200
        self._queue(method, _Fault("fail", status=http_status, error=error), times)

    def stall(self, method: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` calls wait ``seconds`` before being answered normally."""
        self._queue(method, _Fault("stall", seconds=seconds), times)

    def _take_fault(self, key: str) -> _Fault | None:
        with self._cond:
            queue = self._faults.get(key)
            return queue.popleft() if queue else None

    def _apply_fault(self, key: str) -> _Reply | None:
        fault = self._take_fault(key)
        if fault is None:
            return None
        if fault.kind == "stall":
            self._stopping.wait(fault.seconds)
            return None
        if fault.kind == "rate_limit":
            return _Reply.json(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if fault.error is not None:
            return _Reply.json({"ok": False, "error": fault.error}, status=fault.status)
        html = f"<html><body><h1>{fault.status} Server Error</h1></body></html>"
        return _Reply.text(html, status=fault.status, content_type="text/html; charset=utf-8")

    # ------------------------------------------------------------------ dispatch

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        parts = urlsplit(path)
        route, _, rest = parts.path.lstrip("/").partition("/")
        rest = unquote(rest)
        if route == "api" and rest:
            return self._api(rest, parts.query, headers, body)
        if route == "response" and rest:
            return self._response_url(rest, parts.query, headers, body)
        if route == "upload" and rest:
            return self._upload(rest, body)
        return _Reply.text("not found", status=404)

    def _next(self, counter: str) -> int:
        with self._cond:
            n = self._counters.get(counter, 0) + 1
            self._counters[counter] = n
            return n

    def _api(self, method: str, query: str, headers: dict[str, str], body: bytes) -> _Reply:
        invalid = False
        try:
            params = _parse_payload(query, headers, body)
        except (ValueError, UnicodeDecodeError):
            params = {"_invalid_body": body.decode("utf-8", "replace")}
            invalid = True
        call = Call(method, params, headers, time.monotonic())
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
            own = self._answers.get(method)
        faulted = self._apply_fault(method)
        if faulted is not None:
            return faulted
        if invalid:
            return _Reply.json({"ok": False, "error": "invalid_json"})
        if own is not None:
            return _Reply.json(own(call))
        handler = self._methods.get(method)
        if handler is None:
            return _Reply.json({"ok": False, "error": "unknown_method"})
        return _Reply.json(handler(params))

    def _response_url(self, name: str, query: str, headers: dict[str, str], body: bytes) -> _Reply:
        try:
            payload = _parse_payload(query, headers, body)
        except (ValueError, UnicodeDecodeError):
            payload = {"_invalid_body": body.decode("utf-8", "replace")}
        if isinstance(payload.get("payload"), str):  # form-encoded payload=<json>
            with contextlib.suppress(ValueError):
                payload = json.loads(payload["payload"])
        with self._cond:
            self.responses.append(Response(name, payload, time.monotonic(), headers))
            self._cond.notify_all()
        faulted = self._apply_fault("response")
        return faulted if faulted is not None else _Reply.text("ok")

    def _upload(self, file_id: str, body: bytes) -> _Reply:
        faulted = self._apply_fault("upload")
        if faulted is not None:
            return faulted
        with self._cond:
            self.uploads[file_id] = body
            self._cond.notify_all()
        return _Reply.text("OK")

    # ------------------------------------------------------------------ methods

    def _channel_ok(self, channel: Any) -> bool:
        if not channel:
            return False
        channel = str(channel)
        if self.channels is None or channel.startswith("D") or channel in self.users:
            return True
        return channel in self.channels

    def _next_ts(self) -> str:
        micros = _TS_BASE_MICROS + self._next("ts") * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    @staticmethod
    def _message(params: dict[str, Any], ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": AUTH_TEST["user_id"],
            "bot_id": AUTH_TEST["bot_id"],
            "team": AUTH_TEST["team_id"],
            "text": params.get("text", ""),
            "ts": ts,
        }
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if key in params:
                message[key] = params[key]
        return message

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not self._channel_ok(channel):
            return {"ok": False, "error": "channel_not_found"}
        if not any(params.get(k) for k in ("text", "blocks", "attachments")):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        return {"ok": True, "channel": channel, "ts": ts, "message": self._message(params, ts)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), str(params.get("ts", ""))
        if not self._channel_ok(channel):
            return {"ok": False, "error": "channel_not_found"}
        message = self._message(params, ts)
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"], "message": message}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self._channel_ok(params.get("channel")):
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not self._channel_ok(channel):
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": channel, "ts": params.get("ts")}

    def _views(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        n = self._next("view")
        view_id = params.get("view_id") or f"V{n}"
        echoed = {
            "id": view_id,
            "team_id": AUTH_TEST["team_id"],
            "app_id": "A0FAKE",
            "bot_id": AUTH_TEST["bot_id"],
            "private_metadata": "",
            "callback_id": "",
            "external_id": params.get("external_id", ""),
            "state": {"values": {}},
            **view,
            "hash": f"h{n}",
        }
        return {"ok": True, "view": echoed}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": copy.deepcopy(user)}

    def _users_lookup_by_email(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email", "")).lower()
        for user in self.users.values():
            if str(user.get("profile", {}).get("email", "")).lower() == email and email:
                return {"ok": True, "user": copy.deepcopy(user)}
        return {"ok": False, "error": "users_not_found"}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("channel"):
            return {"ok": True, "channel": {"id": str(params["channel"])}}
        user = _first_user(params.get("users"))
        if not user:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": f"D{user}"}}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if not self._channel_ok(channel):
            return {"ok": False, "error": "channel_not_found"}
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": channel.lower(),
                "is_channel": channel.startswith("C"),
                "is_im": channel.startswith("D"),
                "is_private": channel.startswith("G"),
                "is_archived": False,
                "is_member": True,
            },
        }

    def _files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("filename") or not params.get("length"):
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{self._next('file')}"
        with self._cond:
            self._upload_names[file_id] = str(params["filename"])
        return {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        targets = [params["channel_id"]] if params.get("channel_id") else []
        targets += [c for c in str(params.get("channels") or "").split(",") if c]
        if any(not self._channel_ok(c) for c in targets):
            return {"ok": False, "error": "channel_not_found"}
        out, shared = [], []
        with self._cond:
            for item in files:
                file_id = str(item.get("id", ""))
                if file_id not in self._upload_names:
                    return {"ok": False, "error": "file_not_found"}
                name = self._upload_names[file_id]
                title = str(item.get("title") or name)
                content = self.uploads.get(file_id, b"")
                out.append(
                    {"id": file_id, "title": title, "name": name, "size": len(content), "channels": targets}
                )
                shared.append(
                    SharedFile(
                        file_id, name, title, content, list(targets),
                        thread_ts=params.get("thread_ts") or None,
                        initial_comment=params.get("initial_comment") or None,
                    )
                )
            self.shared.extend(shared)
            self._cond.notify_all()
        return {"ok": True, "files": out}
