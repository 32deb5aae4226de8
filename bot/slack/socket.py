"""Socket Mode: `keepwell run`. Bolt's handler, writing one log line per request as HTTP mode does.

Each request Slack sends over the socket is one line (`keepwell.socket`): `method` "SOCKET", `path`
the envelope's type (`slash_commands`, `interactive`, `events_api`), the status of Bolt's answer,
the milliseconds to the acknowledgement and what the request was (`request_summary`). Never its
body: no text, tokens or response URLs.
"""

from __future__ import annotations

import logging
import time

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.slack.http import RequestLine, _id, request_summary

log = logging.getLogger("keepwell.socket")


class LoggedSocketModeHandler(SocketModeHandler):
    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        started = time.perf_counter()
        line = RequestLine()
        payload = req.payload if isinstance(req.payload, dict) else {}
        team = payload.get("team")
        team_id = payload.get("team_id") or (team.get("id") if isinstance(team, dict) else None)
        line.slack = {**request_summary(payload), "team": _id(team_id)}
        if req.retry_attempt:
            line.slack["retry"] = int(req.retry_attempt)
        try:
            answer = run_bolt_app(self.app, req)
            line.status = answer.status
            send_response(client, req, answer, time.time())
        finally:
            line.write("SOCKET", str(req.type)[:40], started, log)
