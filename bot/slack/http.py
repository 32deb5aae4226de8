"""HTTP mode: `POST /slack/events` (Bolt, behind our own signature check) and `GET /healthz`,
served by waitress with a pool of threads (Bolt's own `app.start()` serves one request at a time).

The signature is checked here, before Bolt: a forged, stale (> 5 minutes) or malformed request gets
401 and one log line without its body (Bolt would log the rejected body, and a malformed timestamp
header would make its verifier raise).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger("keepwell.http")
MAX_BODY = 1 << 20  # Slack's payloads are far smaller
StartResponse = Callable[..., Any]


def _json(start_response: StartResponse, status: str, data: dict[str, Any]) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def signature_ok(verifier: SignatureVerifier, body: bytes, timestamp: str | None, signature: str | None,
                 now: float | None = None) -> bool:
    """Slack's v0 signature over the raw body, within 5 minutes; any malformed header is just False."""
    if not timestamp or not signature or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs((now if now is not None else time.time()) - int(timestamp)) > 300:
        return False
    try:
        return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except (ValueError, TypeError):
        return False


class SlackWSGI:
    """The WSGI application of `keepwell serve`."""

    def __init__(self, app: App, signing_secret: str, healthy: Callable[[], bool]) -> None:
        self.bolt = SlackRequestHandler(app, path="/slack/events")
        self.verifier = SignatureVerifier(signing_secret)
        self.healthy = healthy

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz" and method in ("GET", "HEAD"):
            ok = self.healthy()
            return _json(start_response, "200 OK" if ok else "503 Service Unavailable",
                         {"ok": ok, "database": "reachable" if ok else "unreachable"})
        if path != "/slack/events":
            return _json(start_response, "404 Not Found", {"error": "not found"})
        if method != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": "POST only"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return _json(start_response, "413 Content Too Large", {"error": "request too large"})
        body = environ["wsgi.input"].read(length) if length else b""
        if not signature_ok(self.verifier, body, environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
                            environ.get("HTTP_X_SLACK_SIGNATURE")):
            log.warning("rejected a request to /slack/events: invalid, stale or missing signature")
            return _json(start_response, "401 Unauthorized", {"error": "invalid request"})
        environ["wsgi.input"] = io.BytesIO(body)
        return self.bolt(environ, start_response)


def serve(wsgi: SlackWSGI, host: str, port: int, threads: int = 8) -> None:
    from waitress import serve as waitress_serve

    waitress_serve(wsgi, host=host, port=port, threads=threads, ident="keepwell",
                   channel_timeout=30, connection_limit=200, clear_untrusted_proxy_headers=True)
