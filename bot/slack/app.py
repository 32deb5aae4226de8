"""The one place Slack clients are built: `build_app` wires a Bolt app to the services."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.config import Settings
from bot.errors import BadInput, OperationFailed
from bot.services import Keepwell
from bot.slack import handlers


def today_utc() -> date:
    return datetime.now(UTC).date()


def web_client(settings: Settings) -> WebClient:
    """The Web API client: base URL from SLACK_API_URL; a 429 waits for Retry-After, then retries.

    Only rate-limit answers are retried: Slack did not act on them, so a retry cannot post twice.
    """
    if not settings.slack_bot_token:
        raise BadInput("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…; see docs/slack.md)")
    base = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    client = WebClient(token=settings.slack_bot_token, base_url=base, timeout=15)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    return client


# Threads that work out the answers after the acknowledgement (Bolt's lazy listeners; Bolt's own
# default is 5). An answer is mostly Python: more threads than two only queue on the GIL, and every
# one of them delays the acknowledgements the request threads owe Slack. Over HTTP at 8 clients on 2
# cores (benchmarks.slack_bench): 5 threads acked 224 a second with a p99 of 88-114 ms, 2 threads
# 358-407 a second at 39-45 ms, and answered as many (111-114 against 113-124 a second). A bulk
# apply, which can take minutes, runs on a pool of its own (handlers.APPLY_WORKERS).
ANSWER_WORKERS = 2


def build_app(
    service: Keepwell,
    settings: Settings,
    *,
    client: WebClient | None = None,
    today: Callable[[], date] = today_utc,
    stores: handlers.Stores | None = None,
) -> App:
    """A Bolt app answering /keepwell, buttons, modals and App Home over the given services."""
    if not settings.slack_signing_secret:
        raise BadInput("SLACK_SIGNING_SECRET is not set (from the Slack app's Basic Information page)")
    client = client or web_client(settings)
    try:
        app = App(
            client=client,
            signing_secret=settings.slack_signing_secret,
            process_before_response=True,  # ack in the request thread at once; work runs lazily
            logger=logging.getLogger("keepwell.slack.bolt"),
            listener_executor=ThreadPoolExecutor(ANSWER_WORKERS, thread_name_prefix="keepwell-answer"),
        )
    except Exception as exc:  # auth.test failed: a wrong token, or Slack unreachable
        raise OperationFailed(f"cannot start the Slack app: {exc}") from None
    handlers.register(app, service, today, stores)
    return app
