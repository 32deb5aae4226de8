"""`keepwell sync gmail`: the mail a mailbox exchanged with the book's contacts, as touches.

Only metadata is read (the `gmail.metadata` scope: From, To, Cc, Date — never subjects or bodies).
Each message and contact becomes at most one touch (`source='gmail'`, referenced by the message id),
so re-running is harmless; the caps (no draft when any team emailed a contact in the last days) and
the health card's last touch see them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from google.auth.exceptions import RefreshError
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest
from sqlalchemy import Engine, select

from bot.config import Settings
from bot.db import models as m
from bot.errors import OperationFailed
from bot.store import Journal
from integrations.gmail import GOOGLE_ROOT, NoResendHttp
from integrations.google_auth import METADATA, SIGN_IN_AGAIN, credentials

HEADERS = ["From", "To", "Cc", "Date"]
BATCH = 50


@dataclass
class ActivityReport:
    messages: int = 0
    touches: int = 0  # new touches (messages already synced are not counted again)
    contacts: set[str] = field(default_factory=set)


def gmail_service(settings: Settings, mailbox: str | None) -> tuple[Any, str]:
    root = settings.google_api_url or GOOGLE_ROOT
    root = root if root.endswith("/") else root + "/"
    creds = credentials(settings, [METADATA], mailbox)
    service = build("gmail", "v1", http=NoResendHttp(creds), static_discovery=True,
                    client_options={"api_endpoint": root}, cache_discovery=False)
    return service, root + "batch/gmail/v1"


def _day(headers: dict[str, str], internal_ms: str | None) -> date | None:
    try:
        return parsedate_to_datetime(headers.get("date", "")).astimezone(UTC).date()
    except (TypeError, ValueError):
        if internal_ms and internal_ms.isdigit():
            return datetime.fromtimestamp(int(internal_ms) / 1000, UTC).date()
    return None


def _addresses(headers: dict[str, str]) -> set[str]:
    pairs = getaddresses([headers.get(h, "") for h in ("from", "to", "cc")])
    return {addr.strip().lower() for _, addr in pairs if "@" in addr}


def sync_gmail(
    engine: Engine, service: Any, batch_uri: str, *, today: date, days: int = 30
) -> ActivityReport:
    """Record the last `days` of mail with known contacts as touches."""
    C = m.table_of(m.Contact)
    with engine.connect() as conn:
        contacts = {email: pk for email, pk in conn.execute(
            select(C.c.email, C.c.account_pk).where(C.c.account_pk.is_not(None)))}
    report = ActivityReport()
    journal = Journal(engine)
    try:
        ids = list(_message_ids(service, today - timedelta(days=days)))
        for start in range(0, len(ids), BATCH):
            for message in _metadata(service, batch_uri, ids[start:start + BATCH]):
                report.messages += 1
                parts = message.get("payload", {}).get("headers", [])
                headers = {h["name"].lower(): h["value"] for h in parts}
                day = _day(headers, message.get("internalDate"))
                if day is None:
                    continue
                for addr in _addresses(headers) & contacts.keys():
                    report.contacts.add(addr)
                    if journal.add_touch(contacts[addr], day=day, ref=f"gmail:{message['id']}:{addr}",
                                         author=None, note=None, channel="email", contact_email=addr,
                                         source="gmail"):
                        report.touches += 1
    except RefreshError:
        raise OperationFailed(f"Google refused the sign-in; {SIGN_IN_AGAIN} --gmail-activity") from None
    except HttpError as exc:
        if exc.status_code in (401, 403):
            raise OperationFailed(f"Gmail refused to list mail ({exc.status_code}): the sign-in needs the "
                                  f"gmail.metadata scope; {SIGN_IN_AGAIN} --gmail-activity") from None
        raise OperationFailed(f"Gmail refused the request ({exc.status_code}: {exc.reason})") from None
    return report


def _message_ids(service: Any, since: date) -> Iterable[str]:
    page = None
    while True:
        found = service.users().messages().list(
            userId="me", q=f"after:{since:%Y/%m/%d}", maxResults=500, pageToken=page,
        ).execute(num_retries=3)  # a read: retrying cannot duplicate anything
        for item in found.get("messages") or []:
            yield str(item["id"])
        page = found.get("nextPageToken")
        if not page:
            return


def _metadata(service: Any, batch_uri: str, ids: list[str]) -> list[dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    failed: list[str] = []

    def done(request_id: str, response: Any, exception: Exception | None) -> None:
        if exception is None:
            got[request_id] = response
        else:
            failed.append(request_id)

    batch = BatchHttpRequest(callback=done, batch_uri=batch_uri)
    for mid in ids:
        batch.add(service.users().messages().get(userId="me", id=mid, format="metadata",
                                                 metadataHeaders=HEADERS), request_id=mid)
    batch.execute()
    for mid in failed:  # one by one, with the client's own retries (reads only)
        got[mid] = service.users().messages().get(userId="me", id=mid, format="metadata",
                                                  metadataHeaders=HEADERS).execute(num_retries=3)
    return [got[mid] for mid in ids if mid in got]
