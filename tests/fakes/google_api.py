"""A fake Gmail + People API (and OAuth token endpoint) that speaks real HTTP on 127.0.0.1, for tests.

Point the REAL discovery-based client at it (static discovery documents shipped with googleapiclient)::

    with FakeGoogle() as google:
        creds = Credentials(token="fake", refresh_token="r", token_uri=google.token_url,
                            client_id="c", client_secret="s")
        gmail = build("gmail", "v1", credentials=creds, static_discovery=True,
                      client_options={"api_endpoint": google.root_url})
        gmail.users().drafts().create(userId="me", body={"message": {"raw": raw}}).execute()
        assert google.drafts()[0]["subject"] == "Checking in"

URL layout (what googleapiclient sends with ``api_endpoint=root_url``; both documents have servicePath ""):

* Gmail: ``{root}gmail/v1/users/{userId}/drafts[/{id}]``, ``.../messages[/{id}]``, ``.../profile``;
  media upload ``upload/gmail/v1/users/{userId}/drafts`` (googleapiclient keeps the https scheme of the
  discovery rootUrl for media uploads and only swaps the host, so against this http fake a media upload
  only works if the caller rewrites the scheme; send ``{"message": {"raw": ...}}`` JSON instead).
* People: ``{root}v1/people/me/connections``, ``{root}v1/contactGroups``, ``{root}v1/people/{id}``.
* Batch: POST multipart/mixed to ``{root}batch/gmail/v1`` (also ``batch``, ``batch/people/v1``).
  ``service.new_batch_http_request()`` ignores api_endpoint (it posts to https://gmail.googleapis.com/batch):
  build ``BatchHttpRequest(batch_uri=google.root_url + "batch/gmail/v1")`` instead.
* OAuth: POST ``{root}token`` (``token_url``), refresh_token and JWT-bearer grants.

Calls are recorded under their discovery method id ("gmail.users.drafts.create",
"people.people.connections.list", ...), plus "batch" (the outer multipart request; each inner request is
recorded too, with ``batch_id`` set), "oauth2.token" and "unknown" (an unsupported route, which is also
reported in ``errors``).

Fault injection (``fail``, ``lose_reply``) is queued per method id (or "*" for any method) and consumed one
request at a time in the order it was registered; ``fault_rate`` adds seeded random faults. Queued faults
win over rates. A lost reply is handled normally (quota included) and then not answered: ``how="close"``
closes the connection cleanly, which httplib2 answers by silently sending the same request once more (on
the first attempt only), ``how="reset"`` resets it (the client raises ConnectionResetError), and
``how="timeout"`` holds it open until the client gives up (socket timeout).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import email.parser
import email.policy
import email.utils
import itertools
import json
import math
import random
import re
import select
import shlex
import socket
import struct
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.loopback import LoopbackFake, LoopbackHandler

__all__ = ["DEFAULT_ADDRESS", "GMAIL_UNITS", "Call", "FakeGoogle", "QuotaUse"]

DEFAULT_ADDRESS = "keepwell.user@example.com"

# Quota units per Gmail method (Gmail's published "quota units" table).
GMAIL_UNITS: dict[str, int] = {
    "gmail.users.drafts.create": 10,
    "gmail.users.drafts.update": 15,
    "gmail.users.drafts.delete": 10,
    "gmail.users.drafts.get": 5,
    "gmail.users.drafts.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.messages.list": 5,
    "gmail.users.getProfile": 1,
}

LoseHow = Literal["close", "reset", "timeout"]

PERSON_FIELDS = frozenset(
    {
        "addresses", "ageRanges", "biographies", "birthdays", "calendarUrls", "clientData", "coverPhotos",
        "emailAddresses", "events", "externalIds", "genders", "imClients", "interests", "locales",
        "locations", "memberships", "metadata", "miscKeywords", "names", "nicknames", "occupations",
        "organizations", "phoneNumbers", "photos", "relations", "sipAddresses", "skills", "urls",
        "userDefined",
    }
)  # fmt: skip

_STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    410: "FAILED_PRECONDITION",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_REASON = {
    400: "badRequest",
    401: "authError",
    403: "userRateLimitExceeded",
    404: "notFound",
    409: "conflict",
    429: "rateLimitExceeded",
}
_REASON_MESSAGE = {
    "badRequest": "Bad Request",
    "failedPrecondition": "Precondition check failed.",
    "authError": "Invalid Credentials",
    "required": "Login Required.",
    "notFound": "Requested entity was not found.",
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "User Rate Limit Exceeded",
    "backendError": "Backend Error",
    "invalidArgument": "Invalid argument",
}
_RATE_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)
_MAX_BATCH = 100
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_EXPIRED_SYNC_MESSAGE = "Sync token is expired. Clear local cache and retry call without the sync token."


@dataclass(frozen=True)
class Call:
    """One request as the fake received it (inner requests of a batch are recorded one by one)."""

    method: str  # discovery id, "batch", "oauth2.token" or "unknown"
    http_method: str
    path: str  # e.g. "/gmail/v1/users/me/drafts" (no query)
    query: dict[str, list[str]]
    body: Any  # parsed JSON, the token form as a dict, or the raw bytes (uploads, batches)
    headers: dict[str, str]  # lower-case names
    user: str | None  # the {userId} path part (Gmail) or "people/me" style resource (People)
    at: float
    batch_id: int | None = None  # the n-th batch this request belongs to (the outer "batch" call too)

    def param(self, name: str) -> str | None:
        """The last value of a query parameter, or None."""
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class QuotaUse:
    at: float
    user: str
    method: str
    units: int


@dataclass(frozen=True)
class _Fault:
    kind: Literal["error", "lose_reply"]
    status: int = 500
    reason: str = "backendError"
    retry_after: int | None = None
    how: LoseHow = "close"


@dataclass
class _Rates:
    lose_reply: float
    server_error: float
    rate_limit: float
    rng: random.Random
    how: LoseHow
    retry_after: int


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: LoseHow | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
        return cls(status, json.dumps(data, indent=2).encode(), headers=headers or {})

    def dropped(self, how: LoseHow) -> _Reply:
        return _Reply(self.status, self.body, self.content_type, self.headers, drop=how)


class GoogleError(Exception):
    """Raised inside a handler to answer with a Google-style error."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def google_error(
    status: int,
    reason: str | None = None,
    message: str | None = None,
    *,
    retry_after: int | None = None,
    domain: str | None = None,
) -> _Reply:
    """A Google JSON error: {"error": {"code", "message", "errors": [{reason, domain, ...}], "status"}}."""
    reason = reason or _DEFAULT_REASON.get(status, "backendError")
    message = message or _REASON_MESSAGE.get(reason, reason)
    item: dict[str, Any] = {
        "message": message,
        "domain": domain or ("usageLimits" if reason in _RATE_REASONS else "global"),
        "reason": reason,
    }
    headers: dict[str, str] = {}
    if status == 401:
        item.update(location="Authorization", locationType="header")
        headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [item],
            "status": _STATUS_TEXT.get(status, "UNKNOWN"),
        }
    }
    return _Reply.json(body, status=status, headers=headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _b64url_decode(text: str) -> bytes:
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", cleaned):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    """Split "header lines, blank line, body" (CRLF or LF line endings)."""
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        head, body = data, b""
    else:
        head, body = data[: match.start()], data[match.end() :]
    lines = [line.rstrip("\r") for line in head.decode("utf-8", "replace").split("\n")]
    return lines, body


def _header_dict(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    last = ""
    for line in lines:
        if line[:1] in (" ", "\t") and last:
            out[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            last = name.strip().lower()
            out[last] = value.strip()
    return out


def _multipart_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart body into (headers, payload) parts; tolerant of LF-only line endings."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts: list[tuple[dict[str, str], bytes]] = []
    pieces = re.split(rb"(?:^|\r?\n)" + re.escape(delimiter), body)
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        piece = piece[2:] if piece.startswith(b"\r\n") else piece[1:] if piece.startswith(b"\n") else piece
        lines, payload = _split_head(piece)
        parts.append((_header_dict(lines), payload))
    return parts


def _parse_message(raw: bytes) -> EmailMessage:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _strip_brackets(msgid: str) -> str:
    return msgid.strip().strip("<>").strip().lower()


# ---------------------------------------------------------------------------------------------- Gmail state


@dataclass
class _Message:
    id: str
    thread_id: str
    raw: bytes
    labels: list[str]
    created: float  # fake clock
    internal_date: int  # ms since the epoch
    history_id: int
    parsed: EmailMessage
    _headers: dict[str, str] = field(default_factory=dict)  # the searchable ones, parsed once
    text: str = ""

    def __post_init__(self) -> None:
        for name in ("Message-ID", "To", "From", "Cc", "Subject"):
            value = self.parsed.get(name)
            self._headers[name.lower()] = "" if value is None else str(value)
        self._headers["rfc822msgid"] = _strip_brackets(self._headers["message-id"])
        self.text = _text_of(self.parsed)

    def header(self, name: str) -> str:
        name = name.lower()
        if name in self._headers:
            return self._headers[name]
        value = self.parsed.get(name)
        return "" if value is None else str(value)

    @property
    def msgid(self) -> str:
        return self._headers["message-id"]


@dataclass
class _Draft:
    id: str
    message: _Message


@dataclass
class _Mailbox:
    address: str
    drafts: dict[str, _Draft] = field(default_factory=dict)
    messages: dict[str, _Message] = field(default_factory=dict)  # draft messages included


# --------------------------------------------------------------------------------------------- People state


@dataclass
class _Person:
    resource_name: str
    data: dict[str, Any]
    seq: int
    etag: str
    updated: str
    source_id: str
    deleted: bool = False


@dataclass
class _Group:
    resource_name: str
    name: str
    group_type: str
    seq: int
    etag: str
    updated: str
    formatted_name: str = ""


@dataclass
class _Listing:
    """A snapshot being paged through (page tokens point into it)."""

    items: list[dict[str, Any]]
    signature: tuple[Any, ...]
    page_size: int
    next_sync_token: str | None
    total: int


# ------------------------------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, fake: FakeGoogle) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: keep it, don't print it
        self.fake.errors.append(traceback.format_exc())


class _Handler(LoopbackHandler):
    server_version = "FakeGoogle/1.0"
    server: _Server

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake = self.server.fake
        try:
            reply = fake._handle(self.command, self.path, headers, body)
        except Exception:
            fake.errors.append(traceback.format_exc())
            reply = google_error(500, "backendError", "fake google crashed; see FakeGoogle.errors")
        if reply.drop is not None:
            self._drop(reply.drop)
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self, how: LoseHow) -> None:
        """Answer nothing: close cleanly, reset, or hold the connection until the client gives up."""
        self.close_connection = True
        conn = self.connection
        if how == "timeout":
            fake = self.server.fake
            deadline = time.monotonic() + 300
            while not fake._stopping.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([conn], [], [], 0.05)
                if readable:
                    with contextlib.suppress(OSError):
                        conn.recv(65536)  # EOF (client timed out and closed) or junk: either way, done
                    break
        elif how == "reset":
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # the last reference (rfile/wfile) closes in finish(): an RST, not a FIN


# --------------------------------------------------------------------------------------------------- fake


_USER = r"(?P<user>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (
        "POST",
        re.compile(rf"^(?P<upload>upload/)?gmail/v1/users/{_USER}/drafts$"),
        "gmail.users.drafts.create",
    ),
    ("GET", re.compile(rf"^gmail/v1/users/{_USER}/drafts$"), "gmail.users.drafts.list"),
    ("GET", re.compile(rf"^gmail/v1/users/{_USER}/drafts/(?P<id>[^/]+)$"), "gmail.users.drafts.get"),
    (
        "PUT",
        re.compile(rf"^(?P<upload>upload/)?gmail/v1/users/{_USER}/drafts/(?P<id>[^/]+)$"),
        "gmail.users.drafts.update",
    ),
    ("DELETE", re.compile(rf"^gmail/v1/users/{_USER}/drafts/(?P<id>[^/]+)$"), "gmail.users.drafts.delete"),
    ("GET", re.compile(rf"^gmail/v1/users/{_USER}/messages$"), "gmail.users.messages.list"),
    ("GET", re.compile(rf"^gmail/v1/users/{_USER}/messages/(?P<id>[^/]+)$"), "gmail.users.messages.get"),
    ("GET", re.compile(rf"^gmail/v1/users/{_USER}/profile$"), "gmail.users.getProfile"),
    ("GET", re.compile(r"^v1/(?P<user>people/[^/]+)/connections$"), "people.people.connections.list"),
    ("GET", re.compile(r"^v1/contactGroups$"), "people.contactGroups.list"),
    ("GET", re.compile(r"^v1/(?P<user>people/[^/:]+)$"), "people.people.get"),
]
_BATCH_PATHS = frozenset({"batch", "batch/gmail/v1", "batch/people/v1"})


class FakeGoogle(LoopbackFake):
    """Gmail + People + OAuth on 127.0.0.1 for tests. Use as a context manager.

    ``quota_units_per_minute`` enforces Gmail's per-user quota over a sliding 60 s window (``GMAIL_UNITS``
    per method; over it: 429 rateLimitExceeded with Retry-After). ``people`` / ``groups`` seed the
    contacts (each item is either a Google-shaped person / group or ``add_person`` / ``add_group``
    keyword arguments). ``email_address`` is the mailbox "me" stands for. ``search_lag`` hides messages
    younger than that many seconds from ``q`` searches (Gmail's search index lags behind writes).
    ``clock`` (default time.monotonic) drives the quota window, search lag and ``Call.at``.
    """

    def __init__(
        self,
        *,
        quota_units_per_minute: int | None = None,
        people: list[dict[str, Any]] | None = None,
        groups: list[dict[str, Any]] | None = None,
        email_address: str = DEFAULT_ADDRESS,
        search_lag: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.quota_units_per_minute = quota_units_per_minute
        self.email_address = email_address
        self.search_lag = search_lag
        self.clock = clock
        self.calls: list[Call] = []
        self.quota_log: list[QuotaUse] = []
        self.errors: list[str] = []  # tracebacks / unsupported requests the fake itself could not handle

        self._faults: dict[str, deque[_Fault]] = {}
        self._rates: dict[str, _Rates] = {}
        self._counters: dict[str, itertools.count[int]] = {}

        self._revoked = False
        self._dead_tokens: set[str] = set()
        self._seen_tokens: set[str] = set()

        self._mailboxes: dict[str, _Mailbox] = {}
        self._people: dict[str, _Person] = {}
        self._groups: dict[str, _Group] = {}
        self._seq = 0
        self._sync_generation = 0
        self._expired_status = 400
        self._listings: dict[str, _Listing] = {}
        self._windows: dict[str, deque[QuotaUse]] = {}

        self._add_system_group("myContacts", "My Contacts")
        self._add_system_group("starred", "Starred")
        for group in groups or []:
            if "resourceName" in group and "name" in group:
                self.add_group(str(group["name"]), resource_name=str(group["resourceName"]))
            else:
                self.add_group(**group)
        for person in people or []:
            if "resourceName" in person or PERSON_FIELDS.intersection(person):
                self._insert_person(copy.deepcopy(person))
            else:
                self.add_person(**person)

    # ------------------------------------------------------------------ lifecycle

    name = "fake-google"

    def _make_server(self) -> ThreadingHTTPServer:
        return _Server(self)


    @property
    def root_url(self) -> str:
        """What ``client_options={"api_endpoint": ...}`` / KEEPWELL_GOOGLE_API_URL take (trailing slash)."""
        return self.base_url + "/"

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint (``token_uri`` of user or service-account credentials)."""
        return self.base_url + "/token"

    @property
    def gmail_batch_url(self) -> str:
        return self.root_url + "batch/gmail/v1"

    @property
    def people_batch_url(self) -> str:
        return self.root_url + "batch/people/v1"

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until ``count`` requests to ``method`` arrived (counted on arrival, before the answer)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [c for c in self.calls if c.method == method]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    recent = [f"  {c.http_method} {c.path} ({c.method})" for c in self.calls[-20:]]
                    lines = [
                        f"FakeGoogle: waited {timeout:g}s for {count} {method} call(s), got {len(got)}.",
                        f"Requests that did arrive ({len(self.calls)}, last 20):",
                        *(recent or ["  (none)"]),
                    ]
                    if self.errors:
                        lines += ["Fake errors:", *self.errors[-3:]]
                    raise AssertionError("\n".join(lines))
                self._cond.wait(remaining)

    def drafts(self, user: str = "me") -> list[dict[str, Any]]:
        """The mailbox's drafts, oldest first: id, message_id, thread_id, raw (bytes), message_id_header,
        to, subject."""
        with self._cond:
            box = self._mailbox(user)
            return [
                {
                    "id": d.id,
                    "message_id": d.message.id,
                    "thread_id": d.message.thread_id,
                    "raw": d.message.raw,
                    "message_id_header": d.message.msgid,
                    "to": d.message.header("To"),
                    "subject": d.message.header("Subject"),
                }
                for d in box.drafts.values()
            ]

    def messages(self, user: str = "me") -> list[dict[str, Any]]:
        """Every message of the mailbox (drafts' messages included), oldest first."""
        with self._cond:
            return [
                {
                    "id": m.id,
                    "thread_id": m.thread_id,
                    "labels": list(m.labels),
                    "raw": m.raw,
                    "message_id_header": m.msgid,
                    "to": m.header("To"),
                    "subject": m.header("Subject"),
                }
                for m in self._mailbox(user).messages.values()
            ]

    def units_used(self, user: str = "me", *, window: float | None = 60.0) -> int:
        """Quota units charged to ``user`` in the last ``window`` seconds (None: ever)."""
        key = self._user_key(user)
        now = self.clock()
        with self._cond:
            return sum(
                q.units for q in self.quota_log if q.user == key and (window is None or q.at > now - window)
            )

    # ------------------------------------------------------------------ fault injection

    def _queue(self, method: str, fault: _Fault, times: int) -> None:
        with self._cond:
            self._faults.setdefault(method, deque()).extend([fault] * times)

    def fail(
        self,
        method: str,
        *,
        status: int = 500,
        reason: str | None = None,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """The next ``times`` requests to ``method`` ("*": any) fail with a Google JSON error, unperformed.

        ``reason`` defaults by status: 429 rateLimitExceeded, 403 userRateLimitExceeded, 401 authError,
        404 notFound, 400 badRequest, anything else backendError. ``retry_after`` adds a Retry-After header.
        A 401 makes google-auth refresh the token and resend (transparently to the caller).
        """
        reason = reason or _DEFAULT_REASON.get(status, "backendError")
        self._queue(method, _Fault("error", status=status, reason=reason, retry_after=retry_after), times)

    def lose_reply(
        self, method: str = "gmail.users.drafts.create", times: int = 1, *, how: LoseHow = "close"
    ) -> None:
        """The next ``times`` requests to ``method`` are performed, then never answered (see module doc)."""
        self._queue(method, _Fault("lose_reply", how=how), times)

    def fault_rate(
        self,
        method: str,
        *,
        lose_reply: float = 0.0,
        server_error: float = 0.0,
        rate_limit: float = 0.0,
        seed: int = 0,
        how: LoseHow = "close",
        retry_after: int = 1,
    ) -> None:
        """From now on, each request to ``method`` ("*": any) draws one seeded random number and gets a
        lost reply, a 500 backendError or a 429 rateLimitExceeded (Retry-After: ``retry_after``) at these
        rates. Rates of 0 turn it off."""
        if lose_reply + server_error + rate_limit > 1.0:
            raise ValueError("fault rates add up to more than 1")
        with self._cond:
            rng = random.Random(seed)
            self._rates[method] = _Rates(lose_reply, server_error, rate_limit, rng, how, retry_after)

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()
            self._rates.clear()

    def authorized_user_file(self, path: Path) -> Path:
        """Write Google's `authorized_user` credentials file whose token_uri is this fake's."""
        path.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                                    "refresh_token": "r", "token_uri": self.token_url}))
        return path

    def revoke(self) -> None:
        """The token endpoint answers invalid_grant from now on, and every API call gets 401."""
        with self._cond:
            self._revoked = True

    def expire_access_tokens(self) -> None:
        """Every access token seen or issued so far answers 401 (as after an hour); refreshes still work."""
        with self._cond:
            self._dead_tokens |= self._seen_tokens

    def _take_fault(self, method: str) -> _Fault | None:
        with self._cond:
            for key in (method, "*"):
                queue = self._faults.get(key)
                if queue:
                    return queue.popleft()
            rates = self._rates.get(method) or self._rates.get("*")
            if rates is None:
                return None
            draw = rates.rng.random()
            if draw < rates.lose_reply:
                return _Fault("lose_reply", how=rates.how)
            if draw < rates.lose_reply + rates.server_error:
                return _Fault("error", 500, "backendError")
            if draw < rates.lose_reply + rates.server_error + rates.rate_limit:
                return _Fault("error", 429, "rateLimitExceeded", retry_after=rates.retry_after)
            return None

    # ------------------------------------------------------------------ dispatch

    def _next(self, counter: str) -> int:
        with self._cond:
            return next(self._counters.setdefault(counter, itertools.count(1)))

    def _record(self, call: Call) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def _handle(self, http_method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        parts = urlsplit(target)
        path = parts.path.lstrip("/")
        query = parse_qs(parts.query, keep_blank_values=True)
        if path == "token" and http_method == "POST":
            return self._token(http_method, parts.path, query, headers, body)
        if path in _BATCH_PATHS and http_method == "POST":
            return self._batch(parts.path, query, headers, body)
        reply, _ = self._request(http_method, parts.path, query, headers, body, batch_id=None)
        return reply

    def _route(self, http_method: str, path: str) -> tuple[str, dict[str, str]] | None:
        for verb, pattern, method in _ROUTES:
            match = pattern.match(path)
            if verb == http_method and match:
                return method, {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        return None

    def _request(
        self,
        http_method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        *,
        batch_id: int | None,
    ) -> tuple[_Reply, str]:
        """One API request (top-level or inside a batch): record, authenticate, fault, quota, perform."""
        routed = self._route(http_method, path.lstrip("/"))
        method, args = routed if routed is not None else ("unknown", {})
        parsed: Any = body
        if body and headers.get("content-type", "").split(";")[0].strip() == "application/json":
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        call = Call(
            method, http_method, path, query, parsed, headers, args.get("user"), self.clock(), batch_id
        )
        self._record(call)
        if routed is None:
            self.errors.append(f"FakeGoogle: unsupported request {http_method} {path}")
            return google_error(404, "notFound", f"FakeGoogle does not serve {http_method} {path}"), method

        denied = self._authenticate(headers)
        if denied is not None:
            return denied, method
        fault = self._take_fault(method)
        if fault is not None and fault.kind == "error":
            return google_error(fault.status, fault.reason, retry_after=fault.retry_after), method
        try:
            with self._cond:
                self._charge(method, args.get("user"))
                reply = self._perform(method, args, call)
        except GoogleError as exc:
            reply = exc.reply
        if fault is not None:
            reply = reply.dropped(fault.how)
        return reply, method

    def _authenticate(self, headers: dict[str, str]) -> _Reply | None:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return google_error(401, "required", "Login Required.")
        token = auth[7:].strip()
        with self._cond:
            self._seen_tokens.add(token)
            if self._revoked or token in self._dead_tokens:
                return google_error(401, "authError", "Invalid Credentials")
        return None

    def _charge(self, method: str, user: str | None) -> None:
        units = GMAIL_UNITS.get(method)
        if units is None or user is None:
            return
        key = self._user_key(user)
        now = self.clock()
        window = self._windows.setdefault(key, deque())
        while window and window[0].at <= now - 60.0:
            window.popleft()
        if self.quota_units_per_minute is not None:
            recent = list(window)
            used = sum(q.units for q in recent)
            limit = self.quota_units_per_minute
            if used + units > limit:
                # wait until enough of the oldest uses leave the window
                need, freed, wait = used + units - limit, 0, 60.0
                for q in recent:
                    freed += q.units
                    if freed >= need:
                        wait = q.at + 60.0 - now
                        break
                retry = max(1, math.ceil(wait))
                message = f"User-rate limit exceeded.  Retry after {retry} seconds"
                raise GoogleError(google_error(429, "rateLimitExceeded", message, retry_after=retry))
        use = QuotaUse(now, key, method, units)
        window.append(use)
        self.quota_log.append(use)

    def _perform(self, method: str, args: dict[str, str], call: Call) -> _Reply:
        handlers: dict[str, Callable[[dict[str, str], Call], _Reply]] = {
            "gmail.users.drafts.create": self._drafts_create,
            "gmail.users.drafts.list": self._drafts_list,
            "gmail.users.drafts.get": self._drafts_get,
            "gmail.users.drafts.update": self._drafts_update,
            "gmail.users.drafts.delete": self._drafts_delete,
            "gmail.users.messages.list": self._messages_list,
            "gmail.users.messages.get": self._messages_get,
            "gmail.users.getProfile": self._get_profile,
            "people.people.connections.list": self._connections_list,
            "people.contactGroups.list": self._groups_list,
            "people.people.get": self._people_get,
        }
        return handlers[method](args, call)

    # ------------------------------------------------------------------ OAuth

    def _token(
        self, http_method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> _Reply:
        form = {
            k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()
        }
        self._record(Call("oauth2.token", http_method, path, query, form, headers, None, self.clock()))
        fault = self._take_fault("oauth2.token")
        if fault is not None and fault.kind == "error":
            code = "server_error" if fault.status >= 500 else "invalid_request"
            return _Reply.json({"error": code}, status=fault.status)
        grant = form.get("grant_type", "")
        with self._cond:
            revoked = self._revoked
        credential = {"refresh_token": "refresh_token", _JWT_GRANT: "assertion"}.get(grant)
        if credential is not None and form.get(credential) and not revoked:
            reply = self._issue_token()
        elif credential is not None:
            error = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            reply = _Reply.json(error, status=400)
        else:
            reply = _Reply.json({"error": "unsupported_grant_type"}, status=400)
        return reply.dropped(fault.how) if fault is not None else reply

    def _issue_token(self) -> _Reply:
        token = f"fake-{self._next('token')}"
        return _Reply.json({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    # ------------------------------------------------------------------ batch

    def _batch(self, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes) -> _Reply:
        batch_id = self._next("batch")
        self._record(Call("batch", "POST", path, query, body, headers, None, self.clock(), batch_id))
        denied = self._authenticate(headers)
        if denied is not None:
            return denied
        fault = self._take_fault("batch")
        if fault is not None and fault.kind == "error":
            return google_error(fault.status, fault.reason, retry_after=fault.retry_after)
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/mixed"):
            return google_error(400, "badRequest", "Batch requests must be multipart/mixed")
        try:
            parts = _multipart_parts(content_type, body)
        except ValueError as exc:
            return google_error(400, "badRequest", str(exc))
        if len(parts) > _MAX_BATCH:
            return google_error(400, "badRequest", f"A batch may hold at most {_MAX_BATCH} requests")
        boundary = f"batch_{uuid.uuid4().hex}"
        out: list[bytes] = []
        drop: LoseHow | None = fault.how if fault is not None else None
        for part_headers, payload in parts:
            lines, inner_body = _split_head(payload)
            verb, _, rest = lines[0].partition(" ")
            target = rest.rsplit(" ", 1)[0] if rest.endswith(("HTTP/1.1", "HTTP/1.0")) else rest
            inner_headers = _header_dict(lines[1:])
            if "authorization" not in inner_headers and "authorization" in headers:
                inner_headers["authorization"] = headers["authorization"]
            length = inner_headers.get("content-length")
            if length is not None and length.isdigit():
                inner_body = inner_body[: int(length)]
            elif inner_body.endswith(b"\r\n"):
                inner_body = inner_body[:-2]
            split = urlsplit(target)
            inner_query = parse_qs(split.query, keep_blank_values=True)
            reply, _ = self._request(
                verb, split.path, inner_query, inner_headers, inner_body, batch_id=batch_id
            )
            if reply.drop is not None and drop is None:
                drop = reply.drop
            content_id = part_headers.get("content-id", "")
            response_id = f"<response-{content_id[1:]}" if content_id.startswith("<") else content_id
            head = [f"HTTP/1.1 {reply.status} {_phrase(reply.status)}"]
            if reply.body:
                head.append(f"Content-Type: {reply.content_type}")
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            head.append(f"Content-Length: {len(reply.body)}")
            part_head = f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {response_id}\r\n\r\n"
            out.append(part_head.encode() + "\r\n".join(head).encode() + b"\r\n\r\n" + reply.body + b"\r\n")
        out.append(f"--{boundary}--\r\n".encode())
        reply = _Reply(200, b"".join(out), content_type=f"multipart/mixed; boundary={boundary}")
        return reply.dropped(drop) if drop is not None else reply

    # ------------------------------------------------------------------ Gmail

    def _user_key(self, user: str) -> str:
        return self.email_address.lower() if user == "me" else user.lower()

    def _mailbox(self, user: str) -> _Mailbox:
        key = self._user_key(user)
        box = self._mailboxes.get(key)
        if box is None:
            box = self._mailboxes[key] = _Mailbox(self.email_address if user == "me" else user)
        return box

    def _new_message(self, raw: bytes, labels: list[str], thread_id: str | None) -> _Message:
        n = self._next("message")
        parsed = _parse_message(raw)
        if parsed.get("Message-ID") is None:  # Gmail adds one
            raw = f"Message-ID: <m-{n}.fake@mail.gmail.com>\r\n".encode() + raw
            parsed = _parse_message(raw)
        return _Message(
            id=f"m-{n}",
            thread_id=thread_id or f"t-{self._next('thread')}",
            raw=raw,
            labels=labels,
            created=self.clock(),
            internal_date=int(time.time() * 1000),
            history_id=self._next("history"),
            parsed=parsed,
        )

    def _raw_from(self, args: dict[str, str], call: Call) -> tuple[bytes, dict[str, Any]]:
        """The RFC 822 bytes and the message metadata of a create/update (JSON body or media upload)."""
        upload_type = call.param("uploadType")
        if args.get("upload"):
            body = call.body if isinstance(call.body, bytes) else json.dumps(call.body).encode()
            if upload_type == "media":
                return body, {}
            if upload_type == "multipart":
                parts = _multipart_parts(call.headers.get("content-type", ""), body)
                if len(parts) != 2:
                    raise GoogleError(google_error(400, "badRequest", "multipart upload needs 2 parts"))
                meta = json.loads(parts[0][1] or b"{}")
                return parts[1][1], dict(meta.get("message") or {})
            raise GoogleError(google_error(400, "badRequest", f"uploadType {upload_type!r} is not supported"))
        if not isinstance(call.body, dict):
            raise GoogleError(google_error(400, "badRequest", "Invalid JSON payload received."))
        message = call.body.get("message")
        if not isinstance(message, dict) or not message.get("raw"):
            raise GoogleError(google_error(400, "invalidArgument", "Missing draft message"))
        try:
            raw = _b64url_decode(str(message["raw"]))
        except ValueError as exc:
            raise GoogleError(google_error(400, "invalidArgument", "Invalid value for ByteString")) from exc
        return raw, {k: v for k, v in message.items() if k != "raw"}

    @staticmethod
    def _draft_resource(draft: _Draft) -> dict[str, Any]:
        m = draft.message
        return {"id": draft.id, "message": {"id": m.id, "threadId": m.thread_id, "labelIds": list(m.labels)}}

    def _drafts_create(self, args: dict[str, str], call: Call) -> _Reply:
        raw, meta = self._raw_from(args, call)
        box = self._mailbox(args["user"])
        message = self._new_message(raw, ["DRAFT"], meta.get("threadId"))
        draft = _Draft(f"r-{self._next('draft')}", message)
        box.messages[message.id] = message
        box.drafts[draft.id] = draft
        return _Reply.json(self._draft_resource(draft))

    def _draft(self, args: dict[str, str]) -> tuple[_Mailbox, _Draft]:
        box = self._mailbox(args["user"])
        draft = box.drafts.get(args["id"])
        if draft is None:
            raise GoogleError(google_error(404, "notFound"))
        return box, draft

    def _drafts_update(self, args: dict[str, str], call: Call) -> _Reply:
        box, draft = self._draft(args)
        raw, meta = self._raw_from(args, call)
        old = draft.message
        message = self._new_message(raw, ["DRAFT"], meta.get("threadId") or old.thread_id)
        del box.messages[old.id]
        box.messages[message.id] = message
        draft.message = message  # Gmail gives an updated draft a new message id
        return _Reply.json(self._draft_resource(draft))

    def _drafts_delete(self, args: dict[str, str], call: Call) -> _Reply:
        box, draft = self._draft(args)
        del box.drafts[draft.id]
        box.messages.pop(draft.message.id, None)
        return _Reply(204, content_type="text/html")

    def _drafts_get(self, args: dict[str, str], call: Call) -> _Reply:
        _, draft = self._draft(args)
        fmt = call.param("format") or "full"
        headers = call.query.get("metadataHeaders")
        return _Reply.json({"id": draft.id, "message": self._message_resource(draft.message, fmt, headers)})

    def _drafts_list(self, args: dict[str, str], call: Call) -> _Reply:
        box = self._mailbox(args["user"])
        q = call.param("q") or ""
        messages = [d.message for d in reversed(box.drafts.values())]  # newest first, as Gmail
        matched = self._search(messages, q)
        by_message = {d.message.id: d for d in box.drafts.values()}
        items = [
            {"id": by_message[m.id].id, "message": {"id": m.id, "threadId": m.thread_id}} for m in matched
        ]
        return _Reply.json(self._page(items, call, "drafts"))

    def _messages_list(self, args: dict[str, str], call: Call) -> _Reply:
        box = self._mailbox(args["user"])
        q = call.param("q") or ""
        messages = list(reversed(box.messages.values()))
        include_spam_trash = (call.param("includeSpamTrash") or "").lower() == "true"
        if not include_spam_trash and "in:anywhere" not in q.lower():
            messages = [m for m in messages if not {"SPAM", "TRASH"} & set(m.labels)]
        for label in call.query.get("labelIds", []):
            messages = [m for m in messages if label in m.labels]
        matched = self._search(messages, q)
        items = [{"id": m.id, "threadId": m.thread_id} for m in matched]
        return _Reply.json(self._page(items, call, "messages"))

    def _page(self, items: list[dict[str, Any]], call: Call, key: str) -> dict[str, Any]:
        raw_max = call.param("maxResults")
        size = min(max(int(raw_max), 1), 500) if raw_max else 100
        token = call.param("pageToken")
        start = int(token[1:]) if token and token.startswith("o") and token[1:].isdigit() else 0
        page = items[start : start + size]
        out: dict[str, Any] = {}
        if page:
            out[key] = page
        if start + size < len(items):
            out["nextPageToken"] = f"o{start + size}"
        out["resultSizeEstimate"] = len(items)
        return out

    def _search(self, messages: list[_Message], q: str) -> list[_Message]:
        """A subset of Gmail search: rfc822msgid:, in:/is:/label:, to:, from:, subject:, bare words."""
        if not q.strip():
            return messages
        try:
            terms = shlex.split(q)
        except ValueError:
            terms = q.split()
        now = self.clock()
        if self.search_lag > 0:
            messages = [m for m in messages if now - m.created >= self.search_lag]
        out = []
        for m in messages:
            if all(self._term_matches(m, term) for term in terms):
                out.append(m)
        return out

    def _term_matches(self, m: _Message, term: str) -> bool:
        key, sep, value = term.partition(":")
        key, low = key.lower(), value.lower()
        if not sep:
            text = (m.header("Subject") + "\n" + m.text).lower()
            return term.lower() in text
        if key == "rfc822msgid":
            return bool(m.msgid) and m.header("rfc822msgid") == _strip_brackets(value)
        if key in ("in", "is", "label"):
            label = {"drafts": "DRAFT", "draft": "DRAFT"}.get(low, low.upper())
            return label == "ANYWHERE" or label in m.labels
        if key in ("to", "from", "cc", "subject"):
            return low in m.header(key).lower()
        if key in ("after", "before"):  # YYYY/MM/DD, against the message's Date (Gmail: "after" the day)
            try:
                when = datetime.strptime(value, "%Y/%m/%d").date()
                sent = email.utils.parsedate_to_datetime(m.header("Date")).astimezone(UTC).date()
            except (ValueError, TypeError):
                return False
            return sent >= when if key == "after" else sent < when
        self.errors.append(f"FakeGoogle: unsupported Gmail search operator {term!r} (ignored)")
        return True

    def _message_resource(self, m: _Message, fmt: str, metadata_headers: list[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": m.id,
            "threadId": m.thread_id,
            "labelIds": list(m.labels),
            "snippet": " ".join(m.text.split())[:200],
            "sizeEstimate": len(m.raw),
            "historyId": str(m.history_id),
            "internalDate": str(m.internal_date),
        }
        if fmt == "raw":
            out["raw"] = _b64url(m.raw)
        elif fmt == "metadata":
            wanted = {h.lower() for h in metadata_headers or []}
            headers = [
                {"name": k, "value": str(v)} for k, v in m.parsed.items() if not wanted or k.lower() in wanted
            ]
            out["payload"] = {"mimeType": m.parsed.get_content_type(), "headers": headers}
        elif fmt == "full":
            out["payload"] = _payload(m.parsed, "")
        return out

    def _messages_get(self, args: dict[str, str], call: Call) -> _Reply:
        box = self._mailbox(args["user"])
        m = box.messages.get(args["id"])
        if m is None:
            raise GoogleError(google_error(404, "notFound"))
        fmt = call.param("format") or "full"
        return _Reply.json(self._message_resource(m, fmt, call.query.get("metadataHeaders")))

    def _get_profile(self, args: dict[str, str], call: Call) -> _Reply:
        box = self._mailbox(args["user"])
        threads = {m.thread_id for m in box.messages.values()}
        return _Reply.json(
            {
                "emailAddress": box.address,
                "messagesTotal": len(box.messages),
                "threadsTotal": len(threads),
                "historyId": str(self._next("history")),
            }
        )

    # helpers a test can use to act as the user in the Gmail UI

    def add_message(self, raw: bytes, *, labels: Iterable[str] = ("INBOX",), user: str = "me") -> str:
        """Put a message (e.g. a sent one: labels=("SENT",)) in the mailbox; returns its id."""
        with self._cond:
            message = self._new_message(raw, list(labels), None)
            self._mailbox(user).messages[message.id] = message
            return message.id

    def send_draft(self, draft_id: str, user: str = "me") -> str:
        """The user sends a draft: the draft goes away, its message stays, labelled SENT."""
        with self._cond:
            box = self._mailbox(user)
            draft = box.drafts.pop(draft_id)
            draft.message.labels = ["SENT"]
            return draft.message.id

    def delete_draft(self, draft_id: str, user: str = "me") -> None:
        """The user discards a draft."""
        with self._cond:
            box = self._mailbox(user)
            draft = box.drafts.pop(draft_id)
            box.messages.pop(draft.message.id, None)

    # ------------------------------------------------------------------ People: seeding helpers

    def _bump(self) -> tuple[int, str, str]:
        self._seq += 1
        etag = "%" + base64.b64encode(f"EgUBAj0{self._seq}".encode()).decode().rstrip("=")
        updated = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{self._seq % 1000:03d}Z"
        return self._seq, etag, updated

    def _add_system_group(self, gid: str, formatted: str) -> None:
        seq, etag, updated = self._bump()
        rn = f"contactGroups/{gid}"
        self._groups[rn] = _Group(rn, gid, "SYSTEM_CONTACT_GROUP", seq, etag, updated, formatted)

    def add_group(self, name: str, *, resource_name: str | None = None) -> str:
        """A user contact group; returns its resourceName ("contactGroups/<hex>")."""
        with self._cond:
            rn = resource_name or f"contactGroups/{self._next('group') * 0x1F3A5:x}"
            seq, etag, updated = self._bump()
            self._groups[rn] = _Group(rn, name, "USER_CONTACT_GROUP", seq, etag, updated, name)
            return rn

    def _group_rn(self, group: str) -> str:
        if group.startswith("contactGroups/"):
            if group not in self._groups:
                raise KeyError(f"no contact group {group}")
            return group
        for g in self._groups.values():
            if g.name == group:
                return g.resource_name
        return self.add_group(group)

    def _membership(self, rn: str, source: dict[str, Any]) -> dict[str, Any]:
        gid = rn.split("/", 1)[1]
        return {
            "metadata": {"source": source},
            "contactGroupMembership": {"contactGroupId": gid, "contactGroupResourceName": rn},
        }

    def _fields_from(
        self,
        source: dict[str, Any],
        *,
        given_name: str | None = None,
        family_name: str | None = None,
        email: str | list[str] | list[dict[str, str]] | None = None,
        organization: str | None = None,
        title: str | None = None,
        domain: str | None = None,
        phone: str | None = None,
        groups: Iterable[str] | None = None,
        user_defined: dict[str, str] | None = None,
        current: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = copy.deepcopy(current) if current is not None else {}

        def meta(i: int) -> dict[str, Any]:
            return {"primary": True, "source": source} if i == 0 else {"source": source}

        if given_name is not None or family_name is not None:
            old = (data.get("names") or [{}])[0]
            given = given_name if given_name is not None else old.get("givenName", "")
            family = family_name if family_name is not None else old.get("familyName", "")
            display = " ".join(p for p in (given, family) if p)
            name: dict[str, Any] = {"metadata": meta(0), "displayName": display, "unstructuredName": display}
            if family:
                name["familyName"] = family
                name["displayNameLastFirst"] = f"{family}, {given}" if given else family
            else:
                name["displayNameLastFirst"] = display
            if given:
                name["givenName"] = given
            data["names"] = [name]
        if email is not None:
            values: list[str | dict[str, str]] = [email] if isinstance(email, str) else list(email)
            items = []
            for i, item in enumerate(values):
                value, kind = (
                    (item, "work") if isinstance(item, str) else (item["value"], item.get("type", "work"))
                )
                items.append(
                    {"metadata": meta(i), "value": value, "type": kind, "formattedType": kind.title()}
                )
            data["emailAddresses"] = items
        if organization is not None or title is not None or domain is not None:
            old = (data.get("organizations") or [{}])[0]
            org: dict[str, Any] = {"metadata": meta(0), "type": "work", "formattedType": "Work"}
            for key, setting in (("name", organization), ("title", title), ("domain", domain)):
                if setting is not None:
                    org[key] = setting
                elif key in old:
                    org[key] = old[key]
            data["organizations"] = [org]
        if phone is not None:
            data["phoneNumbers"] = [
                {"metadata": meta(0), "value": phone, "canonicalForm": phone, "type": "work"}
            ]
        if user_defined is not None:
            data["userDefined"] = [
                {"metadata": meta(i), "key": k, "value": v} for i, (k, v) in enumerate(user_defined.items())
            ]
        if groups is not None or "memberships" not in data:
            names = ["contactGroups/myContacts", *(groups or [])]
            rns = list(dict.fromkeys(self._group_rn(g) for g in names))
            data["memberships"] = [self._membership(rn, source) for rn in rns]
        return data

    def _insert_person(self, data: dict[str, Any]) -> str:
        with self._cond:
            n = self._next("person")
            rn = str(data.pop("resourceName", None) or f"people/c{n}")
            data.pop("etag", None)
            data.pop("metadata", None)
            seq, etag, updated = self._bump()
            source_id = f"{n * 0x9E3779B1 & 0xFFFFFFFFFFFF:x}"
            self._people[rn] = _Person(rn, data, seq, etag, updated, source_id)
            return rn

    def add_person(
        self,
        *,
        given_name: str = "",
        family_name: str = "",
        email: str | list[str] | list[dict[str, str]] | None = None,
        organization: str | None = None,
        title: str | None = None,
        domain: str | None = None,
        phone: str | None = None,
        groups: Iterable[str] = (),
        user_defined: dict[str, str] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> str:
        """Add a contact (shaped as Google returns it); returns its resourceName "people/c<n>".

        ``groups`` are contactGroups resource names or group names (unknown names are created); every
        contact is also in contactGroups/myContacts. ``fields`` adds raw Google-shaped person fields.
        """
        with self._cond:
            number = self._next("person")
            rn = f"people/c{number}"
            source = {"type": "CONTACT", "id": f"{number * 0x9E3779B1 & 0xFFFFFFFFFFFF:x}"}
            data = self._fields_from(
                source,
                given_name=given_name,
                family_name=family_name,
                email=email,
                organization=organization,
                title=title,
                domain=domain,
                phone=phone,
                groups=groups,
                user_defined=user_defined,
            )
            data.update(copy.deepcopy(fields or {}))
            seq, etag, updated = self._bump()
            self._people[rn] = _Person(rn, data, seq, etag, updated, source["id"])
            return rn

    def update_person(
        self,
        resource_name: str,
        *,
        given_name: str | None = None,
        family_name: str | None = None,
        email: str | list[str] | list[dict[str, str]] | None = None,
        organization: str | None = None,
        title: str | None = None,
        domain: str | None = None,
        phone: str | None = None,
        groups: Iterable[str] | None = None,
        user_defined: dict[str, str] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Change a contact (only the arguments given); new etag, shows up in incremental syncs."""
        with self._cond:
            person = self._people.get(resource_name)
            if person is None or person.deleted:
                raise KeyError(resource_name)
            source = {"type": "CONTACT", "id": person.source_id}
            person.data = self._fields_from(
                source,
                given_name=given_name,
                family_name=family_name,
                email=email,
                organization=organization,
                title=title,
                domain=domain,
                phone=phone,
                groups=groups,
                user_defined=user_defined,
                current=person.data,
            )
            person.data.update(copy.deepcopy(fields or {}))
            person.seq, person.etag, person.updated = self._bump()

    def delete_person(self, resource_name: str) -> None:
        """Delete a contact; an incremental sync reports it with metadata.deleted = true."""
        with self._cond:
            person = self._people.get(resource_name)
            if person is None or person.deleted:
                raise KeyError(resource_name)
            person.deleted = True
            person.seq, person.etag, person.updated = self._bump()

    def expire_sync_tokens(self, *, status: int = 400) -> None:
        """Every sync token handed out so far is expired from now on.

        Google's People API answers an expired token with HTTP 400 FAILED_PRECONDITION, message "Sync token
        is expired. Clear local cache and retry call without the sync token." and an ErrorInfo detail with
        reason EXPIRED_SYNC_TOKEN (410 is the Calendar API's way). ``status=410`` answers 410 instead.
        """
        with self._cond:
            self._sync_generation += 1
            self._expired_status = status

    def person(self, resource_name: str) -> dict[str, Any]:
        """The stored contact, rendered with every field (for assertions)."""
        with self._cond:
            return self._render(self._people[resource_name], None)

    # ------------------------------------------------------------------ People API

    def _person_metadata(self, p: _Person) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "sources": [{"type": "CONTACT", "id": p.source_id, "etag": p.etag, "updateTime": p.updated}],
            "objectType": "PERSON",
        }
        if p.deleted:
            meta["deleted"] = True
        return meta

    def _render(self, p: _Person, mask: set[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceName": p.resource_name, "etag": p.etag}
        if p.deleted:
            out["metadata"] = self._person_metadata(p)
            return out
        for key, value in p.data.items():
            if mask is None or key in mask:
                out[key] = copy.deepcopy(value)
        if mask is None or "metadata" in mask:
            out["metadata"] = self._person_metadata(p)
        return out

    def _person_mask(self, call: Call) -> set[str]:
        raw = call.param("personFields") or call.param("requestMask.includeField") or ""
        paths = [p.strip().removeprefix("person.") for p in raw.split(",") if p.strip()]
        if not paths:
            raise GoogleError(
                google_error(
                    400,
                    "invalidArgument",
                    "personFields mask is required. Please specify one or more valid paths. Valid paths are "
                    "documented at https://developers.google.com/people/api/rest/v1/people.connections/list.",
                )
            )
        for path in paths:
            if path not in PERSON_FIELDS:
                raise GoogleError(
                    google_error(400, "invalidArgument", f'Invalid personFields mask path: "{path}".')
                )
        return set(paths)

    def _sync_token(self) -> str:
        return _b64url(f"people-sync:{self._sync_generation}:{self._seq}".encode()).rstrip("=")

    def _sync_seq(self, token: str) -> int:
        """The change sequence a sync token stands for; raises the expired-token error."""
        try:
            kind, generation, seq = _b64url_decode(token).decode().split(":")
            if kind != "people-sync":
                raise ValueError(kind)
            gen, value = int(generation), int(seq)
        except (ValueError, UnicodeDecodeError) as exc:
            raise GoogleError(google_error(400, "invalidArgument", "Sync token is invalid.")) from exc
        if gen < self._sync_generation:
            status = self._expired_status
            body = {
                "error": {
                    "code": status,
                    "message": _EXPIRED_SYNC_MESSAGE,
                    "status": "FAILED_PRECONDITION",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "EXPIRED_SYNC_TOKEN",
                            "domain": "people.googleapis.com",
                            "metadata": {"service": "people.googleapis.com"},
                        }
                    ],
                }
            }
            raise GoogleError(_Reply.json(body, status=status))
        return value

    def _page_size(self, call: Call, default: int) -> int:
        raw = call.param("pageSize")
        try:
            size = int(raw) if raw else 0
        except ValueError:
            size = -1
        if size < 0 or size > 1000:
            raise GoogleError(google_error(400, "invalidArgument", "pageSize must be between 1 and 1000."))
        return size or default

    def _serve_listing(
        self, call: Call, key: str, build: Callable[[], _Listing], size: int
    ) -> dict[str, Any]:
        token = call.param("pageToken")
        if token:
            listing = self._listings.get(token)
            if listing is None:
                raise GoogleError(google_error(400, "invalidArgument", "Page token is invalid."))
            offset = int(token.rsplit(".", 1)[1])
            signature = self._signature(call)
            if signature != listing.signature:
                message = f"Parameters of a paged request must match the first call ({key})."
                raise GoogleError(google_error(400, "invalidArgument", message))
        else:
            listing, offset = build(), 0
        page = listing.items[offset : offset + size]
        out: dict[str, Any] = {}
        if page:
            out[key] = page
        end = offset + size
        if end < len(listing.items):
            next_token = f"{self._next('page')}.{end}"
            self._listings[next_token] = listing
            out["nextPageToken"] = next_token
        elif listing.next_sync_token is not None:
            out["nextSyncToken"] = listing.next_sync_token
        if key == "connections":
            out["totalPeople"] = listing.total
        out["totalItems"] = listing.total
        return out

    @staticmethod
    def _signature(call: Call) -> tuple[Any, ...]:
        names = ["personFields", "requestMask.includeField", "requestSyncToken", "syncToken", "sortOrder"]
        names += ["groupFields", "sources"]
        return tuple((n, tuple(call.query.get(n, []))) for n in names)

    def _connections_list(self, args: dict[str, str], call: Call) -> _Reply:
        if args.get("user") != "people/me":
            raise GoogleError(google_error(400, "invalidArgument", "Only people/me is valid."))
        mask = self._person_mask(call)
        size = self._page_size(call, 100)
        sync = call.param("syncToken")
        request_sync = (call.param("requestSyncToken") or "").lower() == "true"
        since = self._sync_seq(sync) if sync else None  # checked on every page, as Google does

        def build() -> _Listing:
            if since is not None:
                changed = sorted((p for p in self._people.values() if p.seq > since), key=lambda p: p.seq)
                people = changed
            else:
                people = [p for p in self._people.values() if not p.deleted]
                order = call.param("sortOrder") or "LAST_MODIFIED_ASCENDING"
                if order == "LAST_MODIFIED_DESCENDING":
                    people.sort(key=lambda p: -p.seq)
                elif order in ("FIRST_NAME_ASCENDING", "LAST_NAME_ASCENDING"):
                    field_name = "givenName" if order == "FIRST_NAME_ASCENDING" else "familyName"
                    people.sort(
                        key=lambda p: str((p.data.get("names") or [{}])[0].get(field_name, "")).lower()
                    )
                else:
                    people.sort(key=lambda p: p.seq)
            items = [self._render(p, mask) for p in people]
            token = self._sync_token() if request_sync else None
            return _Listing(items, self._signature(call), size, token, len(items))

        return _Reply.json(self._serve_listing(call, "connections", build, size))

    def _people_get(self, args: dict[str, str], call: Call) -> _Reply:
        mask = self._person_mask(call)
        person = self._people.get(args["user"])
        if person is None or person.deleted:
            raise GoogleError(google_error(404, "notFound", "Requested entity was not found."))
        return _Reply.json(self._render(person, mask))

    def _render_group(self, g: _Group, fields: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceName": g.resource_name, "etag": g.etag}
        if "metadata" in fields:
            out["metadata"] = {"updateTime": g.updated}
        if "groupType" in fields:
            out["groupType"] = g.group_type
        if "name" in fields:
            out["name"] = g.name
            out["formattedName"] = g.formatted_name or g.name
        if "memberCount" in fields:
            count = sum(
                1
                for p in self._people.values()
                if not p.deleted
                and any(
                    m.get("contactGroupMembership", {}).get("contactGroupResourceName") == g.resource_name
                    for m in p.data.get("memberships", [])
                )
            )
            if count:
                out["memberCount"] = count
        return out

    def _groups_list(self, args: dict[str, str], call: Call) -> _Reply:
        raw = call.param("groupFields") or "metadata,groupType,memberCount,name"
        fields = {f.strip() for f in raw.split(",") if f.strip()}
        size = self._page_size(call, 30)
        sync = call.param("syncToken")
        since = self._sync_seq(sync) if sync else None

        def build() -> _Listing:
            groups = [g for g in self._groups.values() if since is None or g.seq > since]
            items = [self._render_group(g, fields) for g in groups]
            return _Listing(items, self._signature(call), size, self._sync_token(), len(items))

        return _Reply.json(self._serve_listing(call, "contactGroups", build, size))


# ---------------------------------------------------------------------------------------------- MIME helpers


def _phrase(status: int) -> str:
    return _Handler.responses.get(status, ("Unknown",))[0]


def _text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _payload(part: Message, part_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": [{"name": k, "value": str(v)} for k, v in part.items()],
    }
    if part.is_multipart():
        out["body"] = {"size": 0}
        children = part.get_payload()
        assert isinstance(children, list)
        out["parts"] = [
            _payload(child, f"{part_id}.{i}" if part_id else str(i)) for i, child in enumerate(children)
        ]
    else:
        data = part.get_payload(decode=True)
        body = data if isinstance(data, bytes) else b""
        out["body"] = {"size": len(body), "data": _b64url(body)} if body else {"size": 0}
    return out
