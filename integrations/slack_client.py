"""Outbound posting for scheduled jobs: at most one message a second per channel, 429s wait for
Retry-After (the client's retry handler), and a channel the bot cannot post to is one warning."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

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
        self.lock = threading.Lock()

    def post(self, channel: str, reply: Reply) -> str:
        """Post once; the message's ts. Raises ChannelUnavailable for a channel the bot cannot use."""
        with self.lock:
            wait = self.last.get(channel, -1e9) + self.gap - self.clock()
            if wait > 0:
                self.sleep(wait)
            self.last[channel] = self.clock()
        body = {k: v for k, v in reply.to_dict().items() if k != "response_type"}
        try:
            answer = self.client.chat_postMessage(channel=channel, **body)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error in GONE:
                raise ChannelUnavailable(f"cannot post to {channel}: {error}") from None
            raise
        return str(answer.get("ts"))
