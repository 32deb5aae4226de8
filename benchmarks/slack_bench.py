"""Slack benchmarks: the acknowledgement in-process, and `/keepwell health` over HTTP.

    python -m benchmarks.slack_bench [--accounts 10000] [--days 365] [--seconds 10] [--clients 8]

Builds (or reuses, with --keep DIR) a generated book, then:
1. in-process: `App.dispatch` of signed `/keepwell health ACCOUNT` requests — the time until Slack
   would have its acknowledgement (p50/p99);
2. over HTTP: `keepwell serve` in a subprocess, N concurrent clients posting signed slash commands
   for random accounts for a fixed time; open loop (each client's next command as soon as the last is
   acknowledged: the ack's latency and rate, the cards queueing behind), then closed loop (each client
   waits for its health card on the response_url before the next: the p99 a person waits for the card
   while N people use the command at once).
The Slack Web API and response_url are the test suite's fake on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from bot.config import KeepwellConfig, Settings
from bot.db.engine import make_engine, migrate
from bot.importer.run import import_csv
from bot.sample_book import generate_book
from bot.services import Keepwell
from bot.slack.app import build_app
from bot.store import Book
from integrations.outbox import Outbox
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import post, signed_headers, slash_command

AS_OF = date(2026, 1, 31)
SECRET = "bench-signing-secret"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def build(folder: Path, accounts: int, days: int) -> Keepwell:
    db = folder / "bench.db"
    fresh = not db.exists()
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    service = Keepwell(Book(engine), KeepwellConfig(), drafts=Outbox(folder / "outbox"))
    if fresh:
        for kind, path in generate_book(folder / "csv", accounts=accounts, days=days, as_of=AS_OF,
                                        id_prefix="ACC-", user_level_days=0):
            import_csv(engine, kind, path)
    today = date.today()
    service.score(today)  # the server reports for today: its peers come from today's run
    return service


def account_ids(service: Keepwell) -> list[str]:
    return [a.account_id for a in service.book.accounts()]


def ack_in_process(service: Keepwell, ids: list[str], calls: int) -> dict[str, float]:
    with FakeSlack() as fake:
        client = WebClient(token="xoxb-bench", base_url=fake.api_url)
        app = build_app(service, Settings(SLACK_SIGNING_SECRET=SECRET), client=client)
        times = []
        for i in range(calls):
            body = slash_command(f"health {random.choice(ids)}", response_url=fake.response_url(f"a{i}"))
            req = BoltRequest(body=body.decode(), headers=signed_headers(SECRET, body))  # type: ignore[arg-type]
            started = time.perf_counter()
            status = app.dispatch(req).status
            times.append((time.perf_counter() - started) * 1000)
            assert status == 200
            if i % 50 == 49:  # let the lazy work of earlier requests drain, as gaps between users would
                fake.wait_for("response", count=i + 1, timeout=60)
        fake.wait_for("response", count=calls, timeout=120)
    return {"ack_p50_ms": statistics.median(times), "ack_p99_ms": pct(times, 0.99), "calls": calls}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_load(folder: Path, ids: list[str], seconds: float, clients: int) -> dict[str, Any]:
    """`keepwell serve` in a subprocess, measured open loop (acks) then closed loop (answers)."""
    port = free_port()
    with FakeSlack() as fake:
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": fake.api_url, "KEEPWELL_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}"}
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            results = open_loop(fake, url, ids, seconds, clients)
            results["closed_loop"] = closed_loop(fake, url, ids, seconds, clients)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return results


def _clients(clients: int, seconds: float, work: Any) -> float:
    """Run `work(stop)` in N threads until `stop` (monotonic); the wall time they took."""
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=work, args=(stop,)) for _ in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - began


def health_command(fake: FakeSlack, url: str, ids: list[str], name: str) -> float:
    """POST a signed `/keepwell health` for a random account, answering to response_url `name`; returns
    when it was sent (monotonic), once Slack's acknowledgement (HTTP 200) is back."""
    body = slash_command(f"health {random.choice(ids)}", response_url=fake.response_url(name))
    started = time.monotonic()
    status, _, _ = post(f"{url}/slack/events", body, signed_headers(SECRET, body))
    assert status == 200
    return started


def open_loop(fake: FakeSlack, url: str, ids: list[str], seconds: float, clients: int) -> dict[str, Any]:
    """Each client sends its next command as soon as the last one is acknowledged: the acks' rate and
    latency under load; the cards queue behind them (their latency here is mostly that queue)."""
    sent: dict[str, float] = {}
    acks: list[float] = []
    lock = threading.Lock()
    counter = iter(range(10**9))

    def client(stop: float) -> None:
        while time.monotonic() < stop:
            name = f"h{next(counter)}"
            started = health_command(fake, url, ids, name)
            took = time.monotonic() - started
            with lock:
                sent[name] = started
                acks.append(took * 1000)

    began = time.monotonic()
    load_time = _clients(clients, seconds, client)
    fake.wait_for("response", count=len(sent), timeout=300)
    drained = time.monotonic() - began
    whole = [(r.at - sent[r.name]) * 1000 for r in fake.responses if r.name in sent]
    return {
        "requests": len(sent), "acks_per_s": len(sent) / load_time, "answers_per_s": len(sent) / drained,
        "ack_p50_ms": statistics.median(acks), "ack_p99_ms": pct(acks, 0.99),
        "answer_p50_ms": statistics.median(whole), "answer_p99_ms": pct(whole, 0.99),
    }


def closed_loop(fake: FakeSlack, url: str, ids: list[str], seconds: float, clients: int) -> dict[str, Any]:
    """Each client waits for its health card to reach the response_url before the next command: what
    N people using `/keepwell health` at the same time each wait, from the POST to the card."""
    answers: list[float] = []
    lock = threading.Lock()
    counter = iter(range(10**9))

    def client(stop: float) -> None:
        while time.monotonic() < stop:
            name = f"c{next(counter)}"
            started = health_command(fake, url, ids, name)
            card = fake.wait_for_response(name, timeout=60)
            with lock:
                answers.append((card.at - started) * 1000)

    took = _clients(clients, seconds, client)
    return {"requests": len(answers), "answers_per_s": len(answers) / took,
            "answer_p50_ms": statistics.median(answers), "answer_p99_ms": pct(answers, 0.99)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ack-calls", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="build the book here and reuse it next time")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="kw-slack-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    service = build(folder, args.accounts, args.days)
    ids = account_ids(service)
    results: dict[str, Any] = {"accounts": len(ids), "clients": args.clients, "seconds": args.seconds,
                               "nproc": os.cpu_count(), "load_before": os.getloadavg()[0]}
    results["in_process"] = ack_in_process(service, ids, args.ack_calls)
    results["http"] = http_load(folder, ids, args.seconds, args.clients)
    results["load_after"] = os.getloadavg()[0]
    targets = {("in_process", "ack_p99_ms"): ("<=", 15), ("http", "ack_p99_ms"): ("<=", 100),
               ("http", "acks_per_s"): (">=", 300)}
    print(f"Slack benchmark: {len(ids):,} accounts, {args.clients} clients for {args.seconds:g}s, "
          f"load {results['load_before']:.2f} → {results['load_after']:.2f}")
    results["closed_loop"] = results["http"].pop("closed_loop")
    for section in ("in_process", "http", "closed_loop"):
        for key, value in results[section].items():
            target = targets.get((section, key))
            verdict = ""
            if target:
                op, limit = target
                ok = value <= limit if op == "<=" else value >= limit
                verdict = f"{op} {limit}  {'PASS' if ok else 'FAIL'}"
            print(f"  {section:10} {key:16} {value:12,.1f}  {verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.out / f"slack-{stamp}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
