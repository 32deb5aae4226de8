"""Build signed inbound requests the way Slack sends them to our endpoint (``POST /slack/events``).

Bodies are bytes exactly as they go on the wire; sign those same bytes::

    body = slash_command("health acme", response_url=slack.response_url())
    status, headers, reply = post(f"{bot_url}/slack/events", body, signed_headers(SECRET, body))

Slash commands and interactions are form-encoded (interactions as ``payload=<json>``); Events API
callbacks are JSON, so sign them with ``content_type="application/json"`` (``event_headers`` does that).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

__all__ = [
    "app_home_opened",
    "block_action",
    "event_callback",
    "event_headers",
    "post",
    "signed_headers",
    "slash_command",
    "url_verification",
    "view_submission",
]

TEAM_ID = "T0FAKE"
TEAM_DOMAIN = "fake"
API_APP_ID = "A0FAKE"
BOT_USER_ID = "U0BOT"
# Slack still sends the deprecated verification token in bodies; Bolt ignores it when a signing secret is set.
VERIFICATION_TOKEN = "fake-verification-token"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def signed_headers(
    secret: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    content_type: str = FORM,
) -> dict[str, str]:
    """Content-Type, X-Slack-Request-Timestamp and X-Slack-Signature for ``body``.

    ``timestamp`` defaults to now; Bolt rejects timestamps more than 5 minutes off its clock.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def event_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """``signed_headers`` for a JSON (Events API) body."""
    return signed_headers(secret, body, timestamp=timestamp, content_type=JSON)


def _user(user_id: str, team_id: str) -> dict[str, Any]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id}


def _team(team_id: str) -> dict[str, Any]:
    return {"id": team_id, "domain": TEAM_DOMAIN}


def _form_payload(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def slash_command(
    text: str,
    *,
    user_id: str = "U0123ABCD",
    channel_id: str = "C0123ABCD",
    response_url: str,
    trigger_id: str = "T.trigger",
    command: str = "/keepwell",
    team_id: str = TEAM_ID,
) -> bytes:
    """A form-encoded slash command body, with the fields Slack sends.

    Beware a Bolt quirk: a form body containing the substring "payload" anywhere (e.g. in ``text``)
    is parsed as an interaction payload and, lacking a ``payload`` field, becomes ``{}``.
    """
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_id.lower(),
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    return urlencode(fields).encode()


def block_action(
    action_id: str,
    value: str,
    *,
    user_id: str = "U0123ABCD",
    response_url: str | None = None,
    trigger_id: str = "T.trigger",
    view: dict[str, Any] | None = None,
    container: dict[str, Any] | None = None,
    block_id: str = "b1",
    channel_id: str = "C0123ABCD",
    message: dict[str, Any] | None = None,
    team_id: str = TEAM_ID,
) -> bytes:
    """A form-encoded ``payload=<json>`` body for a button click (type "block_actions").

    Without ``view`` the click comes from a message in ``channel_id`` (container type "message",
    with ``channel`` and ``message``); with ``view`` it comes from that modal/home view (container
    type "view", and no channel). ``container`` overrides the computed one.
    """
    action_ts = f"{time.time():.6f}"
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "team": _team(team_id),
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }
    if view is not None:
        full_view = {"id": "V1", "type": "home", "hash": "h1", "private_metadata": "", **view}
        payload["view"] = full_view
        payload["container"] = container or {"type": "view", "view_id": full_view["id"]}
    else:
        msg = {
            "type": "message",
            "ts": "1700000000.000100",
            "user": BOT_USER_ID,
            "text": "",
            **(message or {}),
        }
        payload["container"] = container or {
            "type": "message",
            "message_ts": msg["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel_id, "name": channel_id.lower()}
        payload["message"] = msg
    if response_url is not None:
        payload["response_url"] = response_url
    return _form_payload(payload)


def view_submission(
    callback_id: str,
    state_values: dict[str, Any],
    *,
    private_metadata: str = "",
    user_id: str = "U0123ABCD",
    view_id: str = "V1",
    trigger_id: str = "T.trigger",
    team_id: str = TEAM_ID,
    blocks: list[dict[str, Any]] | None = None,
) -> bytes:
    """A form-encoded ``payload=<json>`` body for a modal submit (type "view_submission").

    ``state_values`` is ``view.state.values``: ``{block_id: {action_id: {"type": ..., "value": ...}}}``.
    """
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": _team(team_id),
        "user": _user(user_id, team_id),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": state_values},
            "hash": "h1",
            "title": {"type": "plain_text", "text": "Keepwell"},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": {"type": "plain_text", "text": "Submit"},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": API_APP_ID,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": "B0BOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _form_payload(payload)


def event_callback(event: dict[str, Any], *, event_id: str = "Ev1", team_id: str = TEAM_ID) -> bytes:
    """A JSON Events API body (type "event_callback") wrapping ``event``; sign with ``event_headers``."""
    now = int(time.time())
    body = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": API_APP_ID,
        "event": {"event_ts": f"{now}.000100", **event},
        "type": "event_callback",
        "event_id": event_id,
        "event_time": now,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{event_id}",
    }
    return json.dumps(body, separators=(",", ":")).encode()


def app_home_opened(user_id: str = "U0123ABCD", event_id: str = "Ev1", team_id: str = TEAM_ID) -> bytes:
    """An ``app_home_opened`` event (Home tab) for ``user_id``; JSON, sign with ``event_headers``."""
    return event_callback(
        {"type": "app_home_opened", "user": user_id, "channel": f"D{user_id}", "tab": "home"},
        event_id=event_id, team_id=team_id,
    )


def url_verification(challenge: str = "challenge-token") -> bytes:
    """The one-off ``url_verification`` body Slack sends when the request URL is configured."""
    return json.dumps(
        {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    ).encode()


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` with ``headers``; return (status, headers with lower-case names, body).

    4xx/5xx answers are returned, not raised.
    """
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def wait_until_serving(base: str, proc: Any, log: Any = None, timeout: float = 20.0) -> None:
    """Poll ``base``/healthz until a started ``keepwell serve`` answers 200 (its scheduler may act
    before it listens); fail with its log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            output = log.read_text(errors="replace") if log is not None else "(no log)"
            raise AssertionError(f"serve did not start:\n{output}")
        time.sleep(0.1)
