"""The Slack fake, driven by the real slack_sdk / slack_bolt clients over HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import (
    app_home_opened,
    block_action,
    event_headers,
    post,
    signed_headers,
    slash_command,
    view_submission,
)

FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Acme* is at risk"}}]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake
    assert fake.errors == []


def client_for(fake: FakeSlack, **kwargs: object) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.api_url, **kwargs)  # type: ignore[arg-type]


def test_post_message_is_recorded_with_decoded_blocks(slack: FakeSlack) -> None:
    client = client_for(slack)
    first = client.chat_postMessage(channel="C1", text="Acme is at risk", blocks=BLOCKS)
    second = client.chat_postMessage(channel="C1", text="again")

    assert first["ok"] and first["channel"] == "C1"
    assert first["ts"] == "1700000000.000100" and second["ts"] == "1700000000.000200"
    assert first["message"]["blocks"] == BLOCKS
    [call, _] = slack.calls_to("chat.postMessage")
    assert call.params == {"channel": "C1", "text": "Acme is at risk", "blocks": BLOCKS}
    assert call.headers["authorization"] == "Bearer xoxb-test"
    assert call.headers["content-type"].startswith("application/json")
    assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.postMessage"]


def test_form_encoded_json_params_are_decoded(slack: FakeSlack) -> None:
    # api_call(params=...) is sent form-encoded, with blocks/attachments as JSON strings.
    client = client_for(slack)
    client.api_call("chat.postMessage", params={"channel": "C1", "text": "t", "blocks": json.dumps(BLOCKS)})
    [call] = slack.calls_to("chat.postMessage")
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert call.params == {"channel": "C1", "text": "t", "blocks": BLOCKS}
    reply = client.chat_postEphemeral(channel="C1", user="U0123ABCD", text="only you", blocks=BLOCKS)
    assert reply["message_ts"] == "1700000000.000200"
    assert client.chat_update(channel="C1", ts="1.2", text="edited")["ts"] == "1.2"
    assert client.chat_delete(channel="C1", ts="1.2")["ok"]


def test_rate_limit_is_retried_after_retry_after_seconds() -> None:
    with FakeSlack() as slack:
        slack.rate_limit("chat.postMessage", retry_after=1)
        client = client_for(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

        assert client.chat_postMessage(channel="C1", text="hi")["ok"]

        first, second = slack.calls_to("chat.postMessage")
        assert second.at - first.at >= 1.0


def test_rate_limit_raises_without_a_retry_handler(slack: FakeSlack) -> None:
    slack.rate_limit("chat.postMessage", retry_after=7)
    client = client_for(slack)

    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="hi")

    assert err.value.response.status_code == 429
    assert err.value.response["error"] == "ratelimited"
    assert err.value.response.headers["Retry-After"] == "7"
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]  # normal service resumes


def test_fail_with_server_error_then_recovers(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", status=500, times=2)
    client = client_for(slack)

    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel="C1", text="hi")
        assert err.value.response.status_code == 500
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]
    assert len(slack.calls_to("chat.postMessage")) == 3


def test_fail_with_error_string(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", error="not_in_channel")
    slack.fail("chat.update", status=400, error="invalid_blocks")
    client = client_for(slack)

    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="hi")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "not_in_channel"
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C1", ts="1.1", text="hi")
    assert err.value.response.status_code == 400
    assert err.value.response["error"] == "invalid_blocks"


def test_stall_delays_the_answer_and_client_timeouts_fire(slack: FakeSlack) -> None:
    slack.stall("auth.test", 0.3)
    started = time.monotonic()
    assert client_for(slack).auth_test()["ok"]
    assert time.monotonic() - started >= 0.3

    slack.stall("auth.test", 2.0)
    with pytest.raises(TimeoutError):
        client_for(slack, timeout=0.2).auth_test()


def test_channel_not_found_for_channels_the_bot_is_not_in() -> None:
    with FakeSlack(channels={"C_IN"}) as slack:
        client = client_for(slack)
        assert client.chat_postMessage(channel="C_IN", text="hi")["ok"]
        assert client.chat_postMessage(channel="DU0123ABCD", text="dm")["ok"]
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel="C_OUT", text="hi")
        assert err.value.response["error"] == "channel_not_found"

        assert slack.channels is not None
        slack.channels.discard("C_IN")  # the bot was removed from the channel
        with pytest.raises(SlackApiError, match="channel_not_found"):
            client.conversations_info(channel="C_IN")


def test_views_publish_and_open(slack: FakeSlack) -> None:
    client = client_for(slack)
    home = {"type": "home", "blocks": BLOCKS}

    published = client.views_publish(user_id="U0123ABCD", view=home)
    opened = client.views_open(
        trigger_id="T.trigger", view={"type": "modal", "callback_id": "cb", "blocks": []}
    )
    updated = client.views_update(view_id=opened["view"]["id"], view={"type": "modal", "blocks": []})

    assert published["view"]["id"] == "V1" and published["view"]["hash"] == "h1"
    assert published["view"]["blocks"] == BLOCKS
    assert opened["view"]["id"] == "V2" and opened["view"]["callback_id"] == "cb"
    assert updated["view"]["id"] == "V2" and updated["view"]["hash"] == "h3"
    [call] = slack.calls_to("views.publish")
    assert call.params == {"user_id": "U0123ABCD", "view": home}


def test_users_info_lookup_and_conversations_open(slack: FakeSlack) -> None:
    client = client_for(slack)

    user = client.users_info(user="U0123ABCD")["user"]
    assert user["profile"] == {"email": "ana@example.com", "real_name": "Ana Lopez", "display_name": "ana"}
    assert client.users_lookupByEmail(email="ana@example.com")["user"]["id"] == "U0123ABCD"
    with pytest.raises(SlackApiError, match="user_not_found"):
        client.users_info(user="U404")
    assert client.conversations_open(users="U0123ABCD")["channel"]["id"] == "DU0123ABCD"
    with pytest.raises(SlackApiError, match="unknown_method"):
        client.api_call("made.up")
    assert slack.calls[-1].method == "made.up"


def test_custom_users() -> None:
    with FakeSlack(users={"U9": {"profile": {"email": "bo@example.com"}}}) as slack:
        client = client_for(slack)
        assert client.users_info(user="U9")["user"] == {"id": "U9", "profile": {"email": "bo@example.com"}}
        with pytest.raises(SlackApiError, match="user_not_found"):
            client.users_info(user="U0123ABCD")


def test_files_upload_v2_uploads_the_bytes(slack: FakeSlack) -> None:
    data = b"account,health\nacme,42\n" * 100
    reply = client_for(slack).files_upload_v2(
        channel="C1", filename="health.csv", content=data, title="Health", initial_comment="Weekly"
    )

    assert reply["file"]["id"] == "F1" and reply["file"]["title"] == "Health"
    assert slack.uploads == {"F1": data}
    assert [c.method for c in slack.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    get_url, complete = slack.calls
    assert get_url.params["filename"] == "health.csv" and get_url.params["length"] == str(len(data))
    assert complete.params["files"] == [{"id": "F1", "title": "Health"}]
    assert complete.params["channel_id"] == "C1" and complete.params["initial_comment"] == "Weekly"


def test_response_url_posts_are_recorded(slack: FakeSlack) -> None:
    reply = WebhookClient(slack.response_url()).send(text="Working on it", response_type="ephemeral")
    WebhookClient(slack.response_url("r2")).send_dict({"replace_original": True, "blocks": BLOCKS})

    assert reply.status_code == 200
    first, second = slack.wait_for("response", count=2)
    assert first.name == "r1" and first.payload == {"text": "Working on it", "response_type": "ephemeral"}
    assert second.name == "r2" and second.payload["blocks"] == BLOCKS
    assert slack.calls == []


def test_wait_for_times_out_with_what_did_arrive(slack: FakeSlack) -> None:
    client_for(slack).chat_postMessage(channel="C1", text="hello there")
    started = time.monotonic()

    with pytest.raises(AssertionError) as err:
        slack.wait_for("views.publish", timeout=0.2)

    assert 0.2 <= time.monotonic() - started < 1.0
    message = str(err.value)
    assert "views.publish" in message and "got 0" in message
    assert "chat.postMessage" in message and "hello there" in message


def test_wait_for_sees_calls_from_another_thread(slack: FakeSlack) -> None:
    client = client_for(slack)
    later = threading.Timer(0.05, lambda: client.chat_postMessage(channel="C1", text="later"))
    later.start()
    [call] = slack.wait_for("chat.postMessage", timeout=2)
    later.join()  # the poster's thread ends inside this test, while the fake still listens
    assert call.params["text"] == "later"


def test_twenty_sequential_calls_are_fast(slack: FakeSlack) -> None:
    client = client_for(slack)
    client.auth_test()  # warm-up
    started = time.monotonic()
    for i in range(20):
        client.chat_postMessage(channel="C1", text=f"n{i}", blocks=BLOCKS)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"20 calls took {elapsed:.3f}s"


def test_keep_alive_requests_have_no_nagle_delay(slack: FakeSlack) -> None:
    # slack_sdk's urllib transport sends "Connection: close" (a new connection per call), so Nagle's
    # ~40 ms stall only shows on a reused connection; without TCP_NODELAY this loop takes ~0.8 s.
    port = int(slack.base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        started = time.monotonic()
        for _ in range(20):
            conn.request("POST", "/api/auth.test", body=b"token=xoxb-test", headers=FORM_HEADERS)
            reply = conn.getresponse()
            assert reply.status == 200 and json.loads(reply.read())["user_id"] == "U0BOT"
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert elapsed < 0.4, f"20 keep-alive requests took {elapsed:.3f}s"
    assert len(slack.calls_to("auth.test")) == 20
    assert slack.calls[0].params == {"token": "xoxb-test"}


def test_exit_is_prompt_with_stalled_requests_and_idle_connections() -> None:
    fake = FakeSlack()
    with fake:
        fake.stall("auth.test", 30)
        threading.Thread(target=lambda: _swallow(client_for(fake, timeout=5).auth_test), daemon=True).start()
        fake.wait_for("auth.test")
        idle = http.client.HTTPConnection("127.0.0.1", int(fake.base_url.rsplit(":", 1)[1]), timeout=5)
        idle.request("POST", "/api/chat.delete", body=b"channel=C1&ts=1.1", headers=FORM_HEADERS)
        assert json.loads(idle.getresponse().read()) == {"ok": True, "channel": "C1", "ts": "1.1"}
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    idle.close()


def _swallow(fn: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        fn()


def test_bolt_app_starts_against_the_fake(slack: FakeSlack) -> None:
    app = App(client=client_for(slack), signing_secret="s")

    assert app.client.base_url == slack.api_url
    [call] = slack.calls_to("auth.test")
    assert call.headers["authorization"] == "Bearer xoxb-test"


def test_signed_headers_verify() -> None:
    body = slash_command("health acme", response_url="http://127.0.0.1:1/response/r1")
    headers = signed_headers("s3cret", body)

    verifier = SignatureVerifier("s3cret")
    ts, sig = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert verifier.is_valid(body, ts, sig)
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid(body, ts, sig)
    old = signed_headers("s3cret", body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid(body, old["X-Slack-Request-Timestamp"], old["X-Slack-Signature"])


def test_payloads_parse_as_bolt_requests() -> None:
    command = slash_command("health acme", response_url="http://x/response/r1")
    req = BoltRequest(body=command.decode(), headers=signed_headers("s", command))
    assert req.body["command"] == "/keepwell" and req.body["text"] == "health acme"
    assert req.context.user_id == "U0123ABCD" and req.context.channel_id == "C0123ABCD"
    assert req.context.response_url == "http://x/response/r1"

    click = block_action("snooze", "acct-7", response_url="http://x/response/r2")
    req = BoltRequest(body=click.decode(), headers=signed_headers("s", click))
    assert req.body["type"] == "block_actions"
    assert req.body["actions"][0] == {**req.body["actions"][0], "action_id": "snooze", "value": "acct-7"}
    assert req.body["container"]["type"] == "message" and req.context.channel_id == "C0123ABCD"
    assert req.context.response_url == "http://x/response/r2" and req.context.team_id == "T0FAKE"

    home_click = block_action("open", "1", view={"id": "V9", "type": "home"})
    req = BoltRequest(body=home_click.decode(), headers=signed_headers("s", home_click))
    assert req.body["container"] == {"type": "view", "view_id": "V9"} and "response_url" not in req.body

    values = {"note": {"text": {"type": "plain_text_input", "value": "call back"}}}
    submit = view_submission("checkin", values, private_metadata="acct-7")
    req = BoltRequest(body=submit.decode(), headers=signed_headers("s", submit))
    assert req.body["type"] == "view_submission"
    assert req.body["view"]["callback_id"] == "checkin" and req.body["view"]["private_metadata"] == "acct-7"
    assert req.body["view"]["state"]["values"] == values and req.context.user_id == "U0123ABCD"

    event = app_home_opened("U0123ABCD")
    req = BoltRequest(body=event.decode(), headers=event_headers("s", event))
    assert req.body["event"]["type"] == "app_home_opened" and req.context.user_id == "U0123ABCD"
    assert json.loads(event)["type"] == "event_callback"


def test_bolt_dispatches_signed_payloads_end_to_end(slack: FakeSlack) -> None:
    """A Bolt app accepts our signed payloads and its respond()/client reach the fake."""
    app = App(client=client_for(slack), signing_secret="s")

    @app.command("/keepwell")
    def on_command(ack, respond, command):  # type: ignore[no-untyped-def]
        ack()
        respond(f"got {command['text']}")

    @app.action("snooze")
    def on_action(ack, body, client):  # type: ignore[no-untyped-def]
        ack()
        client.chat_postMessage(channel=body["channel"]["id"], text=body["actions"][0]["value"])

    body = slash_command("health acme", response_url=slack.response_url())
    resp = app.dispatch(BoltRequest(body=body.decode(), headers=signed_headers("s", body)))
    assert resp.status == 200
    [response] = slack.wait_for("response")
    assert response.payload["text"] == "got health acme"

    click = block_action("snooze", "acct-7")
    resp = app.dispatch(BoltRequest(body=click.decode(), headers=signed_headers("s", click)))
    assert resp.status == 200
    [call] = slack.wait_for("chat.postMessage")
    # Bolt's per-request WebClient carries team_id as a default param, so it is sent on every call.
    assert call.params == {"channel": "C0123ABCD", "text": "acct-7", "team_id": "T0FAKE"}

    @app.event("app_home_opened")
    def on_home(event, client):  # type: ignore[no-untyped-def]
        client.views_publish(user_id=event["user"], view={"type": "home", "blocks": BLOCKS})

    @app.view("checkin")
    def on_submit(ack, view):  # type: ignore[no-untyped-def]
        ack(response_action="errors", errors={"note": view["state"]["values"]["note"]["text"]["value"]})

    event = app_home_opened()
    assert app.dispatch(BoltRequest(body=event.decode(), headers=event_headers("s", event))).status == 200
    [publish] = slack.wait_for("views.publish")
    assert publish.params["user_id"] == "U0123ABCD" and publish.params["view"]["blocks"] == BLOCKS

    values = {"note": {"text": {"type": "plain_text_input", "value": "too short"}}}
    submit = view_submission("checkin", values)
    resp = app.dispatch(BoltRequest(body=submit.decode(), headers=signed_headers("s", submit)))
    assert resp.status == 200
    assert json.loads(resp.body) == {"response_action": "errors", "errors": {"note": "too short"}}

    bad = app.dispatch(BoltRequest(body=body.decode(), headers=signed_headers("wrong", body)))
    assert bad.status == 401


def test_post_returns_error_statuses(slack: FakeSlack) -> None:
    status, headers, body = post(f"{slack.base_url}/nowhere", b"x=1", {"Content-Type": "text/plain"})
    assert status == 404 and body == b"not found" and headers["content-length"] == "9"
