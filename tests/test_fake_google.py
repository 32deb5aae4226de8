"""The Google fake, driven by the REAL googleapiclient (static discovery) over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest, MediaInMemoryUpload, _should_retry_response

from tests.fakes.google_api import FakeGoogle

CREATE = "gmail.users.drafts.create"
CONNECTIONS = "people.people.connections.list"


class Clock:
    """A hand-driven clock for the fake's quota window and search lag."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        yield fake
    assert fake.errors == []


def creds_for(fake: FakeGoogle, token: str | None = "fake") -> Credentials:
    return Credentials(
        token=token, refresh_token="r", token_uri=fake.token_url, client_id="c", client_secret="s"
    )


def gmail_for(fake: FakeGoogle, *, timeout: float | None = None, creds: Any = None) -> Resource:
    credentials = creds if creds is not None else creds_for(fake)
    options = {"api_endpoint": fake.root_url}
    if timeout is None:
        return build("gmail", "v1", credentials=credentials, static_discovery=True, client_options=options)
    authed = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
    return build("gmail", "v1", http=authed, static_discovery=True, client_options=options)


def people_for(fake: FakeGoogle, creds: Credentials | None = None) -> Resource:
    credentials = creds if creds is not None else creds_for(fake)
    options = {"api_endpoint": fake.root_url}
    return build("people", "v1", credentials=credentials, static_discovery=True, client_options=options)


def rfc822(n: int, *, to: str | None = None, body: str = "Just checking in.") -> bytes:
    message = EmailMessage()
    message["To"] = to or f"contact{n}@example.com"
    message["From"] = "csm@keepwell.test"
    message["Subject"] = f"Checking in #{n}"
    message["Message-ID"] = f"<kw-{n}@keepwell.test>"
    message.set_content(body)
    return message.as_bytes()


def draft_body(n: int, **kwargs: Any) -> dict[str, Any]:
    return {"message": {"raw": base64.urlsafe_b64encode(rfc822(n, **kwargs)).decode()}}


def create(gmail: Resource, n: int, **kwargs: Any) -> HttpRequest:
    return gmail.users().drafts().create(userId="me", body=draft_body(n, **kwargs))


def find(gmail: Resource, msgid: str, q_prefix: str = "") -> list[dict[str, Any]]:
    found = gmail.users().messages().list(userId="me", q=f"{q_prefix}rfc822msgid:{msgid}").execute()
    return list(found.get("messages", []))


def no_sleep(request: HttpRequest) -> HttpRequest:
    request._sleep = lambda seconds: None  # googleapiclient's backoff between num_retries attempts
    return request


def people_list(service: Resource, **params: Any) -> dict[str, Any]:
    params.setdefault("personFields", "names,emailAddresses")
    result: dict[str, Any] = service.people().connections().list(resourceName="people/me", **params).execute()
    return result


# ------------------------------------------------------------------------------------------- URL layout


def test_client_urls_follow_api_endpoint_except_media_and_default_batch(google: FakeGoogle) -> None:
    gmail, people = gmail_for(google), people_for(google)
    root = google.root_url

    assert create(gmail, 1).uri == f"{root}gmail/v1/users/me/drafts?alt=json"
    listing = people.people().connections().list(resourceName="people/me", personFields="names")
    assert listing.uri == f"{root}v1/people/me/connections?personFields=names&alt=json"
    assert people.contactGroups().list().uri == f"{root}v1/contactGroups?alt=json"
    # Traps: media uploads keep the discovery document's https scheme (only the host is swapped) ...
    upload = (
        gmail.users()
        .drafts()
        .create(userId="me", body={}, media_body=MediaInMemoryUpload(rfc822(1), mimetype="message/rfc822"))
    )
    assert upload.uri.startswith(root.replace("http://", "https://") + "upload/gmail/v1/users/me/drafts?")
    # ... and new_batch_http_request() ignores api_endpoint altogether.
    assert gmail.new_batch_http_request()._batch_uri == "https://gmail.googleapis.com/batch"
    assert google.calls == []


# ---------------------------------------------------------------------------------------------- drafts


def test_draft_lifecycle_create_list_get_delete(google: FakeGoogle) -> None:
    gmail = gmail_for(google)

    first = create(gmail, 1).execute()
    second = create(gmail, 2).execute()

    assert first == {"id": "r-1", "message": {"id": "m-1", "threadId": "t-1", "labelIds": ["DRAFT"]}}
    assert second["id"] == "r-2" and second["message"]["id"] == "m-2"
    listed = gmail.users().drafts().list(userId="me").execute()
    assert [d["id"] for d in listed["drafts"]] == ["r-2", "r-1"]  # newest first
    assert listed["resultSizeEstimate"] == 2
    got = gmail.users().drafts().get(userId="me", id="r-1", format="raw").execute()
    assert base64.urlsafe_b64decode(got["message"]["raw"]) == rfc822(1)

    assert gmail.users().drafts().delete(userId="me", id="r-1").execute() == ""
    with pytest.raises(HttpError) as missing:
        gmail.users().drafts().get(userId="me", id="r-1").execute()
    assert missing.value.status_code == 404
    assert missing.value.error_details[0]["reason"] == "notFound"
    [left] = google.drafts()
    assert left["id"] == "r-2" and left["message_id"] == "m-2" and left["raw"] == rfc822(2)
    assert left["message_id_header"] == "<kw-2@keepwell.test>"
    assert left["to"] == "contact2@example.com" and left["subject"] == "Checking in #2"
    [call, *_] = google.calls_to(CREATE)
    assert call.http_method == "POST" and call.path == "/gmail/v1/users/me/drafts" and call.user == "me"
    assert call.body == draft_body(1) and call.headers["authorization"] == "Bearer fake"
    assert call.param("alt") == "json"
    assert [c.method for c in google.calls] == [
        CREATE,
        CREATE,
        "gmail.users.drafts.list",
        "gmail.users.drafts.get",
        "gmail.users.drafts.delete",
        "gmail.users.drafts.get",
    ]


def test_drafts_are_found_by_rfc822msgid(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    for n in (1, 2, 3):
        create(gmail, n).execute()
    google.add_message(rfc822(9), labels=["SENT"])

    assert find(gmail, "<kw-2@keepwell.test>") == [{"id": "m-2", "threadId": "t-2"}]
    assert find(gmail, "kw-2@keepwell.test") == [{"id": "m-2", "threadId": "t-2"}]  # brackets optional
    assert find(gmail, "<kw-2@keepwell.test>", "in:drafts ") == [{"id": "m-2", "threadId": "t-2"}]
    assert find(gmail, "<kw-9@keepwell.test>", "in:drafts ") == []
    assert [m["id"] for m in find(gmail, "<kw-9@keepwell.test>", "in:sent ")] == ["m-4"]
    by_draft = gmail.users().drafts().list(userId="me", q="rfc822msgid:<kw-3@keepwell.test>").execute()
    assert by_draft["drafts"] == [{"id": "r-3", "message": {"id": "m-3", "threadId": "t-3"}}]
    nothing = gmail.users().messages().list(userId="me", q="rfc822msgid:<nope@x>").execute()
    assert nothing == {"resultSizeEstimate": 0}  # Google leaves out empty lists
    assert [m["id"] for m in find(gmail, "<kw-1@keepwell.test>", "to:contact1@example.com ")] == ["m-1"]


def test_messages_get_formats_and_profile(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    create(gmail, 7, body="Hello Ana, how is the rollout going?").execute()

    meta = (
        gmail.users()
        .messages()
        .get(userId="me", id="m-1", format="metadata", metadataHeaders=["Message-ID", "Subject"])
        .execute()
    )
    assert meta["labelIds"] == ["DRAFT"] and meta["snippet"].startswith("Hello Ana")
    assert meta["payload"]["headers"] == [
        {"name": "Subject", "value": "Checking in #7"},
        {"name": "Message-ID", "value": "<kw-7@keepwell.test>"},
    ]
    full = gmail.users().messages().get(userId="me", id="m-1").execute()
    assert full["payload"]["mimeType"] == "text/plain"
    assert base64.urlsafe_b64decode(full["payload"]["body"]["data"]).startswith(b"Hello Ana")
    assert google.calls_to("gmail.users.messages.get")[0].query["metadataHeaders"] == [
        "Message-ID",
        "Subject",
    ]

    profile = gmail.users().getProfile(userId="me").execute()
    assert profile["emailAddress"] == google.email_address and profile["messagesTotal"] == 1
    other = gmail.users().getProfile(userId="ana@example.com").execute()
    assert other["emailAddress"] == "ana@example.com" and other["messagesTotal"] == 0


def test_bad_create_is_400_and_nothing_is_stored(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    with pytest.raises(HttpError) as bad:
        gmail.users().drafts().create(userId="me", body={"message": {}}).execute()
    assert bad.value.status_code == 400 and bad.value.reason == "Missing draft message"
    assert google.drafts() == []


def test_media_upload_is_served_when_the_scheme_is_fixed(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    upload = (
        gmail.users()
        .drafts()
        .create(userId="me", body={}, media_body=MediaInMemoryUpload(rfc822(5), mimetype="message/rfc822"))
    )
    upload.uri = upload.uri.replace("https://", "http://", 1)  # see the URL-layout test: the client's trap

    assert upload.execute()["id"] == "r-1"
    assert google.drafts()[0]["raw"] == rfc822(5)
    assert google.calls_to(CREATE)[0].param("uploadType") == "multipart"


# ----------------------------------------------------------------------------------------- lost replies


def test_lost_reply_reset_leaves_the_draft_created_and_findable(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    google.lose_reply(CREATE, how="reset")

    with pytest.raises(ConnectionResetError):
        create(gmail, 1).execute()

    assert [d["message_id_header"] for d in google.drafts()] == ["<kw-1@keepwell.test>"]
    assert find(gmail, "<kw-1@keepwell.test>", "in:drafts ") == [{"id": "m-1", "threadId": "t-1"}]
    assert len(google.calls_to(CREATE)) == 1


def test_lost_reply_close_is_silently_resent_once_by_httplib2(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    google.lose_reply(CREATE, how="close")

    answer = create(gmail, 1).execute()  # no error: httplib2 resent the POST on a fresh connection

    assert answer["id"] == "r-2"
    assert [d["message_id_header"] for d in google.drafts()] == ["<kw-1@keepwell.test>"] * 2
    google.lose_reply(CREATE, times=2)
    with pytest.raises(http.client.RemoteDisconnected):
        create(gmail, 2).execute()
    assert len(google.drafts()) == 4 and len(google.calls_to(CREATE)) == 4


def test_lost_reply_timeout_raises_a_socket_timeout(google: FakeGoogle) -> None:
    gmail = gmail_for(google, timeout=0.3)
    google.lose_reply(CREATE, how="timeout")

    with pytest.raises(TimeoutError):
        create(gmail, 1).execute()

    assert len(google.drafts()) == 1
    assert create(gmail, 2).execute()["id"] == "r-2"  # the client reconnects


def test_num_retries_after_a_lost_reply_duplicates_the_draft(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    google.lose_reply(CREATE, how="reset")

    answer = no_sleep(create(gmail, 1)).execute(num_retries=1)

    assert answer["id"] == "r-2"
    assert len(find(gmail, "<kw-1@keepwell.test>")) == 2  # why the product must not blind-retry creates


# ------------------------------------------------------------------------------------------ HTTP errors


def test_429_with_retry_after_is_not_performed(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    google.fail(CREATE, status=429, retry_after=7)

    with pytest.raises(HttpError) as limited:
        create(gmail, 1).execute()

    error = limited.value
    assert error.status_code == 429 and error.resp.status == 429 and error.resp["retry-after"] == "7"
    assert error.error_details[0]["reason"] == "rateLimitExceeded"
    assert error.error_details[0]["domain"] == "usageLimits"
    assert json.loads(error.content)["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert _should_retry_response(error.resp.status, error.content)
    assert google.drafts() == []
    assert create(gmail, 1).execute()["id"] == "r-1"


def test_500_then_num_retries_recovers_with_one_draft(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    google.fail(CREATE)
    with pytest.raises(HttpError) as failed:
        create(gmail, 1).execute()
    assert failed.value.status_code == 500 and failed.value.reason == "Backend Error"
    assert failed.value.error_details[0]["reason"] == "backendError"

    google.fail(CREATE, times=2)
    assert no_sleep(create(gmail, 1)).execute(num_retries=2)["id"] == "r-1"
    assert len(google.drafts()) == 1 and len(google.calls_to(CREATE)) == 4


def test_403_user_rate_limit_is_retryable_for_the_client(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    google.fail("*", status=403)

    with pytest.raises(HttpError) as limited:
        gmail.users().getProfile(userId="me").execute()

    assert limited.value.status_code == 403
    assert limited.value.error_details[0]["reason"] == "userRateLimitExceeded"
    assert _should_retry_response(403, limited.value.content)


def test_unsupported_requests_are_reported_in_errors() -> None:
    with FakeGoogle() as fake:
        gmail = gmail_for(fake)
        with pytest.raises(HttpError) as missing:
            gmail.users().labels().list(userId="me").execute()
    assert missing.value.status_code == 404
    assert fake.calls[0].method == "unknown"
    assert fake.errors == ["FakeGoogle: unsupported request GET /gmail/v1/users/me/labels"]


# ----------------------------------------------------------------------------------------------- quota


def test_quota_sliding_window_answers_429_with_retry_after() -> None:
    clock = Clock()
    with FakeGoogle(quota_units_per_minute=100, clock=clock) as fake:
        gmail = gmail_for(fake)
        for n in range(10):
            create(gmail, n).execute()
            clock.now += 2.0  # creates at t=1000, 1002, ..., 1018

        with pytest.raises(HttpError) as over:
            create(gmail, 10).execute()
        error = over.value
        assert error.status_code == 429 and error.error_details[0]["reason"] == "rateLimitExceeded"
        assert error.resp["retry-after"] == "40"  # the t=1000 create leaves the window at t=1060
        assert fake.units_used() == 100 and len(fake.drafts()) == 10

        clock.now = 1060.5
        assert create(gmail, 10).execute()["id"] == "r-11"
        with pytest.raises(HttpError) as again:
            gmail.users().getProfile(userId="me").execute()  # 1 unit still does not fit
        assert again.value.resp["retry-after"] == "2"
        assert gmail.users().getProfile(userId="other@example.com").execute()  # quotas are per user
    assert fake.units_used(window=None) == 110 and fake.units_used("other@example.com") == 1
    assert [q.units for q in fake.quota_log][-1:] == [1] and fake.errors == []


# ----------------------------------------------------------------------------------------------- batch


def test_batch_of_five_creates_with_one_failing_part(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    results: dict[str, tuple[Any, HttpError | None]] = {}

    def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
        results[request_id] = (response, exception)

    batch = BatchHttpRequest(callback=collect, batch_uri=google.root_url + "batch/gmail/v1")
    for n in range(5):
        batch.add(create(gmail, n), request_id=f"contact-{n}")
    google.fail(CREATE, status=500)  # the first part in the batch
    batch.execute()

    failed = {rid: exc for rid, (_, exc) in results.items() if exc is not None}
    assert list(failed) == ["contact-0"] and failed["contact-0"].status_code == 500
    assert sorted(resp["id"] for resp, exc in results.values() if exc is None) == ["r-1", "r-2", "r-3", "r-4"]
    assert sorted(d["message_id_header"] for d in google.drafts()) == [
        f"<kw-{n}@keepwell.test>" for n in range(1, 5)
    ]
    [outer] = google.calls_to("batch")
    assert outer.path == "/batch/gmail/v1" and outer.headers["content-type"].startswith("multipart/mixed")
    inner = [c for c in google.calls if c.batch_id == outer.batch_id and c.method == CREATE]
    assert len(inner) == 5 and inner[0].body == draft_body(0)
    assert inner[0].headers["authorization"] == "Bearer fake"


def test_batch_lost_reply_performs_every_part_and_drops_the_answer(google: FakeGoogle) -> None:
    gmail = gmail_for(google)
    batch = BatchHttpRequest(batch_uri=google.gmail_batch_url)
    for n in range(3):
        batch.add(create(gmail, n))
    google.lose_reply(CREATE, how="reset")

    with pytest.raises(ConnectionResetError):
        batch.execute()

    assert len(google.drafts()) == 3


def test_batch_quota_counts_each_part() -> None:
    with FakeGoogle(quota_units_per_minute=30) as fake:
        gmail = gmail_for(fake)
        outcomes: list[int] = []
        batch = BatchHttpRequest(
            batch_uri=fake.gmail_batch_url,
            callback=lambda rid, resp, exc: outcomes.append(exc.status_code if exc else 200),
        )
        for n in range(5):
            batch.add(create(gmail, n))
        batch.execute()
    assert outcomes == [200, 200, 200, 429, 429] and fake.units_used() == 30


# ---------------------------------------------------------------------------------------------- people


def test_connections_paging_250_people_in_three_pages() -> None:
    people = [
        {"given_name": f"P{n:03d}", "family_name": "Doe", "email": f"p{n}@acme.test"} for n in range(250)
    ]
    with FakeGoogle(people=people) as fake:
        service = people_for(fake)
        pages = [people_list(service, pageSize=100, requestSyncToken=True)]
        while "nextPageToken" in pages[-1]:
            token = pages[-1]["nextPageToken"]
            pages.append(people_list(service, pageSize=100, requestSyncToken=True, pageToken=token))
    assert [len(p["connections"]) for p in pages] == [100, 100, 50]
    assert ["nextSyncToken" in p for p in pages] == [False, False, True]
    assert {p["totalPeople"] for p in pages} == {250}
    everyone = [person for page in pages for person in page["connections"]]
    assert len({p["resourceName"] for p in everyone}) == 250
    first = everyone[0]
    assert set(first) == {"resourceName", "etag", "names", "emailAddresses"}  # personFields respected
    assert first["names"][0]["displayName"] == "P000 Doe" and first["names"][0]["givenName"] == "P000"
    assert first["emailAddresses"][0]["value"] == "p0@acme.test"
    assert fake.errors == []


def test_incremental_sync_returns_only_changes() -> None:
    with FakeGoogle(people=[{"given_name": f"P{n}", "email": f"p{n}@acme.test"} for n in range(5)]) as fake:
        service = people_for(fake)
        full = people_list(service, requestSyncToken=True)
        assert len(full["connections"]) == 5

        added = fake.add_person(
            given_name="Ana",
            family_name="Lopez",
            email="ana@acme.test",
            organization="Acme",
            title="CTO",
            domain="acme.test",
            groups=["VIP"],
            user_defined={"keepwell_tier": "gold"},
        )
        fake.update_person("people/c2", email="p1@new.test")
        fake.delete_person("people/c3")

        fields = "names,emailAddresses,organizations,memberships,userDefined,metadata"
        delta = people_list(
            service, personFields=fields, requestSyncToken=True, syncToken=full["nextSyncToken"]
        )
        changed = {p["resourceName"]: p for p in delta["connections"]}
        assert list(changed) == [added, "people/c2", "people/c3"]
        assert changed["people/c2"]["emailAddresses"][0]["value"] == "p1@new.test"
        assert changed["people/c3"]["metadata"]["deleted"] is True and "names" not in changed["people/c3"]
        ana = changed[added]
        assert ana["organizations"][0] | {"metadata": None} == {
            "metadata": None,
            "name": "Acme",
            "title": "CTO",
            "domain": "acme.test",
            "type": "work",
            "formattedType": "Work",
        }
        assert ana["userDefined"][0]["key"] == "keepwell_tier" and ana["userDefined"][0]["value"] == "gold"
        groups = [m["contactGroupMembership"]["contactGroupResourceName"] for m in ana["memberships"]]
        assert groups[0] == "contactGroups/myContacts" and len(groups) == 2
        assert ana["metadata"]["sources"][0]["type"] == "CONTACT"

        quiet = people_list(service, requestSyncToken=True, syncToken=delta["nextSyncToken"])
        assert "connections" not in quiet and quiet["nextSyncToken"]
        assert len(people_list(service)["connections"]) == 5  # full list: 5 + 1 added - 1 deleted
    assert fake.errors == []


def test_expired_sync_token_is_400_failed_precondition_or_410_on_request() -> None:
    with FakeGoogle(people=[{"given_name": "Ana"}]) as fake:
        service = people_for(fake)
        token = people_list(service, requestSyncToken=True)["nextSyncToken"]
        fake.expire_sync_tokens()

        with pytest.raises(HttpError) as expired:
            people_list(service, requestSyncToken=True, syncToken=token)
        error = expired.value
        assert error.status_code == 400
        assert error.reason.startswith("Sync token is expired")
        assert error.error_details[0]["reason"] == "EXPIRED_SYNC_TOKEN"
        assert json.loads(error.content)["error"]["status"] == "FAILED_PRECONDITION"

        fresh = people_list(service, requestSyncToken=True)  # a full sync recovers
        assert len(fresh["connections"]) == 1
        fake.expire_sync_tokens(status=410)
        with pytest.raises(HttpError) as gone:
            people_list(service, requestSyncToken=True, syncToken=fresh["nextSyncToken"])
        assert gone.value.status_code == 410
        assert gone.value.error_details[0]["reason"] == "EXPIRED_SYNC_TOKEN"
    assert fake.errors == []


def test_connections_parameter_validation(google: FakeGoogle) -> None:
    for n in range(3):
        google.add_person(given_name=f"P{n}")
    service = people_for(google)
    with pytest.raises(HttpError) as no_mask:
        service.people().connections().list(resourceName="people/me").execute()
    assert no_mask.value.status_code == 400 and "personFields" in no_mask.value.reason
    with pytest.raises(HttpError) as too_big:
        people_list(service, pageSize=1001)
    assert too_big.value.status_code == 400

    page = people_list(service, pageSize=2)
    with pytest.raises(HttpError) as mismatch:
        people_list(service, pageSize=2, personFields="names", pageToken=page["nextPageToken"])
    assert mismatch.value.status_code == 400
    assert len(people_list(service, pageSize=2, pageToken=page["nextPageToken"])["connections"]) == 1


def test_contact_groups_list_with_member_counts() -> None:
    groups = [{"name": "VIP"}, {"name": "Churn risk", "resource_name": "contactGroups/churn"}]
    people: list[dict[str, Any]] = [
        {"given_name": "Ana", "groups": ["VIP"]},
        {"given_name": "Bo", "groups": ["VIP", "contactGroups/churn"]},
        {"given_name": "Cy"},
    ]
    with FakeGoogle(people=people, groups=groups) as fake:
        listed = people_for(fake).contactGroups().list().execute()
    by_name = {g["name"]: g for g in listed["contactGroups"]}
    assert list(by_name) == ["myContacts", "starred", "VIP", "Churn risk"]
    assert by_name["myContacts"]["memberCount"] == 3 and by_name["VIP"]["memberCount"] == 2
    assert by_name["Churn risk"] | {"etag": "", "metadata": {}} == {
        "resourceName": "contactGroups/churn",
        "etag": "",
        "metadata": {},
        "groupType": "USER_CONTACT_GROUP",
        "name": "Churn risk",
        "formattedName": "Churn risk",
        "memberCount": 1,
    }
    assert "memberCount" not in by_name["starred"] and listed["totalItems"] == 4
    assert fake.errors == []


# ------------------------------------------------------------------------------------------------ auth


def test_token_refresh_expiry_and_revoke(google: FakeGoogle) -> None:
    creds = creds_for(google, token=None)
    gmail = gmail_for(google, creds=creds)

    gmail.users().getProfile(userId="me").execute()  # no token yet: refreshed through token_url first
    [refresh] = google.calls_to("oauth2.token")
    assert refresh.body["grant_type"] == "refresh_token" and refresh.body["refresh_token"] == "r"
    assert google.calls_to("gmail.users.getProfile")[0].headers["authorization"] == "Bearer fake-1"

    google.expire_access_tokens()
    gmail.users().getProfile(userId="me").execute()  # 401, refresh, resend: invisible to the caller
    assert [c.headers["authorization"] for c in google.calls_to("gmail.users.getProfile")][1:] == [
        "Bearer fake-1",
        "Bearer fake-2",
    ]

    google.revoke()
    with pytest.raises(RefreshError) as revoked:
        gmail.users().getProfile(userId="me").execute()
    assert "invalid_grant" in str(revoked.value)


def test_service_account_jwt_bearer_grant(google: FakeGoogle) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "keepwell-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "keepwell@keepwell-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": google.token_url,
    }
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/gmail.compose"], subject="csm@example.com"
    )

    assert gmail_for(google, creds=creds).users().getProfile(userId="me").execute()
    [grant] = google.calls_to("oauth2.token")
    assert grant.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = json.loads(base64.urlsafe_b64decode(grant.body["assertion"].split(".")[1] + "=="))
    assert claims["sub"] == "csm@example.com" and claims["iss"] == info["client_email"]
    assert claims["aud"] == "https://oauth2.googleapis.com/token"  # google-auth's default, even so


# --------------------------------------------------------------------------------------- soak helpers


def _faulty_run(seed: int) -> tuple[list[str], int]:
    with FakeGoogle() as fake:
        fake.fault_rate(CREATE, lose_reply=0.1, server_error=0.1, rate_limit=0.1, seed=seed, how="reset")
        gmail = gmail_for(fake)
        outcomes = []
        for n in range(40):
            try:
                create(gmail, n).execute()
                outcomes.append("ok")
            except HttpError as exc:
                outcomes.append(str(exc.status_code))
            except ConnectionResetError:
                outcomes.append("lost")
        stored = len(fake.drafts())
    assert fake.errors == []
    return outcomes, stored


def test_fault_rate_is_deterministic_per_seed() -> None:
    first, stored = _faulty_run(seed=7)
    again, _ = _faulty_run(seed=7)
    other, _ = _faulty_run(seed=8)

    assert first == again and first != other
    assert {"ok", "lost", "500", "429"} <= set(first)
    assert stored == first.count("ok") + first.count("lost")  # lost replies were performed


def test_search_lag_hides_fresh_messages_from_q_only() -> None:
    clock = Clock()
    with FakeGoogle(search_lag=5.0, clock=clock) as fake:
        gmail = gmail_for(fake)
        create(gmail, 1).execute()
        assert find(gmail, "<kw-1@keepwell.test>") == []
        assert len(gmail.users().drafts().list(userId="me").execute()["drafts"]) == 1
        clock.now += 5.0
        assert len(find(gmail, "<kw-1@keepwell.test>")) == 1
    assert fake.errors == []


def test_concurrent_clients_get_distinct_drafts(google: FakeGoogle) -> None:
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        gmail = gmail_for(google)  # httplib2 is not thread-safe: one client per thread
        try:
            for n in range(10):
                create(gmail, offset + n).execute()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(100 * t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == []
    drafts = google.drafts()
    assert len(drafts) == 60 and len({d["id"] for d in drafts}) == 60
    assert len({d["message_id_header"] for d in drafts}) == 60
    assert len(google.wait_for(CREATE, 60)) == 60
