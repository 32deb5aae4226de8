"""Outbound posting for scheduled jobs, messages and file uploads: at most one a second per channel, 429s
wait for Retry-After (the client's retry handler), and a channel the bot cannot post to is one warning."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.errors import ChannelUnavailable
from bot.slack.blocks import Reply

log = logging.getLogger("keepwell.post")
GONE = {"channel_not_found", "not_in_channel", "is_archived", "channel_is_archived", "account_inactive"}


class Poster:
    def __init__(self, client: WebClient, *, per_channel_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.gap = per_channel_seconds
        self.clock, self.sleep = clock, sleep
        self.last: dict[str, float] = {}
        self.users: dict[str, str | None] = {}
        self.lock = threading.Lock()

    def post(self, channel: str, reply: Reply) -> str:
        """Post once; the message's ts. Raises ChannelUnavailable for a channel the bot cannot use."""
        body = {k: v for k, v in reply.to_dict().items() if k != "response_type"}
        answer = self._send(channel, lambda: self.client.chat_postMessage(channel=channel, **body))
        return str(answer.get("ts"))

    def upload(self, channel: str, content: bytes, *, filename: str, title: str,
               thread_ts: str | None = None, comment: str | None = None) -> str:
        """Upload a file once and share it in the channel (in the thread ``thread_ts`` when given, with
        ``comment`` as its message); the file's id. Paced and mapped like ``post``: it is a message too."""
        answer = self._send(channel, lambda: self.client.files_upload_v2(
            channel=channel, content=content, filename=filename, title=title, thread_ts=thread_ts,
            initial_comment=comment,
        ))
        file = answer.get("file") or {}
        return str(file.get("id"))

    def _send(self, channel: str, call: Callable[[], SlackResponse]) -> SlackResponse:
        """Wait for the channel's turn, then make the call once; a "gone channel" error becomes
        ChannelUnavailable, anything else is raised as it is."""
        with self.lock:
            wait = self.last.get(channel, -1e9) + self.gap - self.clock()
            if wait > 0:
                self.sleep(wait)
            self.last[channel] = self.clock()
        try:
            return call()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error in GONE:
                raise ChannelUnavailable(f"cannot post to {channel}: {error}") from None
            raise

    def user_for(self, email: str) -> str | None:
        """The Slack user id of an email (users.lookupByEmail), remembered; None when nobody has it."""
        key = email.strip().lower()
        if key not in self.users:
            try:
                found = self.client.users_lookupByEmail(email=key).get("user") or {}
                self.users[key] = str(found.get("id")) if found.get("id") else None
            except SlackApiError as exc:
                error = exc.response.get("error") if exc.response is not None else None
                if error != "users_not_found":
                    log.warning("cannot look up a Slack user by email: %s", error)
                self.users[key] = None
        return self.users[key]

    def channel_problem(self, channel: str) -> str | None:
        """Why jobs could not post to a channel ('unknown', 'archived', 'not a member'), or None.

        Raises LookupError when the app may not look (no channels:read scope): nothing is known then.
        """
        try:
            info = self.client.conversations_info(channel=channel).get("channel") or {}
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error == "channel_not_found":
                return "unknown"
            raise LookupError(str(error)) from None
        if info.get("is_archived"):
            return "archived"
        if info.get("is_member") is False:
            return "not a member"
        return None
