"""Gmail drafts through the real googleapiclient: batched, paced to the per-user quota, retried only
where that cannot duplicate, and found again by Message-ID.

Two traps this module exists to avoid:
- httplib2 (googleapiclient's default transport) silently re-sends a request once when the connection
  closes without an answer — for `drafts.create`, a duplicate. `NoResendHttp` sends each request
  once; whether a lost create happened is decided by looking the draft up.
- `service.new_batch_http_request()` ignores a custom API endpoint, so batches are built with an
  explicit `batch_uri`.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httplib2
import requests
from google.auth.exceptions import RefreshError, TransportError
from google.auth.transport.requests import AuthorizedSession
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from bot.config import DraftsConfig, Settings
from bot.draftstore import AuthFailed, Created, Failed, Outcome, Retry
from bot.emails import Draft, to_mime
from bot.errors import OperationFailed
from integrations.google_auth import COMPOSE, SIGN_IN_AGAIN, credentials

GOOGLE_ROOT = "https://gmail.googleapis.com/"
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
COST = {"create": 10, "list": 5}


class NoResendHttp:
    """The httplib2 interface googleapiclient calls, over google-auth's session: one send per request
    (a 401 is refreshed and sent again, which is safe: Google refused it)."""

    def __init__(self, creds: Any, timeout: float = 30.0) -> None:
        self.session = AuthorizedSession(creds)
        self.timeout = timeout

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                redirections: int = 5, connection_type: Any = None) -> tuple[httplib2.Response, bytes]:
        resp = self.session.request(method, uri, data=body, headers=headers, timeout=self.timeout)
        info = {k.lower(): v for k, v in resp.headers.items()}
        info["status"] = str(resp.status_code)
        return httplib2.Response(info), resp.content


class Pacer:
    """Keeps a mailbox under its per-minute quota units, as Google counts them (a sliding minute)."""

    def __init__(self, units_per_minute: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, headroom: float = 0.98) -> None:
        self.limit = units_per_minute * headroom
        self.clock, self.sleep = clock, sleep
        self.spent: deque[tuple[float, int]] = deque()
        self.lock = threading.Lock()

    def take(self, units: int) -> None:
        with self.lock:
            while True:
                now = self.clock()
                while self.spent and now - self.spent[0][0] >= 60:
                    self.spent.popleft()
                used = sum(u for _, u in self.spent)
                if used + units <= self.limit or not self.spent:
                    self.spent.append((now, units))
                    return
                self.sleep(max(0.01, 60 - (now - self.spent[0][0])))


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _outcome(exc: Exception) -> Outcome:
    """What a failed create means: retry (and whether it may have happened), or give up."""
    if isinstance(exc, RefreshError):
        raise AuthFailed(f"Google refused the sign-in ({exc.args[0] if exc.args else 'invalid_grant'}); "
                         f"{SIGN_IN_AGAIN}") from None
    if isinstance(exc, HttpError):
        status = exc.status_code
        reasons = {d.get("reason") for d in (exc.error_details or []) if isinstance(d, dict)}
        if status == 401:
            raise AuthFailed(f"Google rejected the credentials; {SIGN_IN_AGAIN}")
        if status == 429 or (status == 403 and reasons & RATE_REASONS):
            return Retry(after=_retry_after(exc), reason=f"rate limited ({status})")
        if status >= 500:
            return Retry(after=_retry_after(exc), maybe_created=True, reason=f"Google error {status}")
        return Failed(f"Gmail refused the draft ({status}: {exc.reason})")
    if isinstance(exc, requests.RequestException | TransportError | OSError):
        return Retry(maybe_created=True, reason=f"no answer ({type(exc).__name__})")
    raise exc


class GmailStore:
    """Drafts in one Gmail mailbox."""

    name = "gmail"

    def __init__(self, service: Any, *, batch_uri: str, pacer: Pacer, user: str = "me",
                 mailbox: str | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.service = service
        self.sleep = sleep
        self.batch_uri = batch_uri
        self.pacer = pacer
        self.user = user
        self.mailbox = mailbox

    @classmethod
    def from_settings(cls, settings: Settings, drafts: DraftsConfig, mailbox: str | None) -> GmailStore:
        creds = credentials(settings, [COMPOSE], mailbox)
        root = settings.google_api_url or GOOGLE_ROOT
        root = root if root.endswith("/") else root + "/"
        service = build("gmail", "v1", http=NoResendHttp(creds), static_discovery=True,
                        client_options={"api_endpoint": root}, cache_discovery=False)
        return cls(service, batch_uri=root + "batch/gmail/v1", pacer=Pacer(drafts.quota_units_per_minute),
                   mailbox=mailbox)

    def find(self, message_id: str) -> str | None:
        """The message id of the draft carrying this Message-ID header, if it exists."""
        for attempt in range(5):
            self.pacer.take(COST["list"])
            try:
                found = self.service.users().drafts().list(
                    userId=self.user, q=f"rfc822msgid:{message_id.strip('<>')}", maxResults=5
                ).execute()
            except Exception as exc:  # decide below: retry a passing failure, stop on auth
                outcome = _outcome(exc)
                if not isinstance(outcome, Retry):
                    reason = outcome.reason if isinstance(outcome, Failed) else "unexpected answer"
                    raise OperationFailed(f"cannot search the mailbox: {reason}") from None
                self.sleep(min(30.0, outcome.after or 0.5 * 2 ** attempt))
                continue
            drafts = found.get("drafts") or []
            return str(drafts[0]["message"]["id"]) if drafts else None
        raise OperationFailed("Gmail did not answer a search five times; try again later")

    def create_many(self, drafts: Sequence[Draft]) -> dict[str, Outcome]:
        self.pacer.take(COST["create"] * len(drafts))
        out: dict[str, Outcome] = {}
        now = datetime.now(UTC)

        def done(request_id: str, response: Any, exception: Exception | None) -> None:
            if exception is None:
                out[request_id] = Created(str(response["message"]["id"]))
            else:
                out[request_id] = _outcome(exception)

        batch = BatchHttpRequest(callback=done, batch_uri=self.batch_uri)
        for draft in drafts:
            raw = base64.urlsafe_b64encode(to_mime(draft, now).as_bytes()).decode()
            batch.add(self.service.users().drafts().create(userId=self.user, body={"message": {"raw": raw}}),
                      request_id=draft.message_id)
        try:
            batch.execute(http=self.service._http)
        except Exception as exc:  # the whole batch went unanswered: each may or may not exist
            outcome = _outcome(exc)
            return {d.message_id: outcome for d in drafts}
        return out

    def link(self, location: str) -> str | None:
        account = f"?authuser={self.mailbox}" if self.mailbox else ""
        return f"https://mail.google.com/mail/{account}#drafts?compose={location}"
