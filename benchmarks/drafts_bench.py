"""Drafts benchmarks: plan rendering rate, and apply against Gmail's per-user quota.

    python -m benchmarks.drafts_bench [--accounts 4000] [--apply-drafts 4500] [--quota 15000]

1. plan: a generated book where every contact role is eligible (about 2.7 contacts per account);
   rendered drafts per second for `Drafting.plan` (health inputs, caps, rendering, storing).
2. apply: the first N drafts of that plan into the fake Gmail (the test suite's, on 127.0.0.1) that
   enforces `--quota` units per user per minute (a create costs 10); the sustained rate against the
   ceiling (quota ÷ 10 per minute), and duplicates (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import update

from bot.config import DraftsConfig, KeepwellConfig, Settings
from bot.db import models as m
from bot.db.engine import make_engine, migrate
from bot.drafts import Drafting
from bot.importer.run import import_csv
from bot.sample_book import generate_book
from bot.services import Keepwell
from bot.store import Book
from integrations.gmail import GmailStore
from tests.fakes.google_api import FakeGoogle

AS_OF = date(2026, 1, 31)
ROLES = ["champion", "decision_maker", "user", "billing", "other"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--apply-drafts", type=int, default=4500,
                        help="drafts applied (default 4500: three minutes, two of them past the first)")
    parser.add_argument("--quota", type=int, default=15_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="kw-drafts-bench-"))
    engine = make_engine(f"sqlite:///{folder / 'bench.db'}")
    migrate(engine)
    config = KeepwellConfig(drafts=DraftsConfig(roles=ROLES, quota_units_per_minute=args.quota))
    service = Keepwell(Book(engine), config)
    for kind, path in generate_book(folder / "csv", accounts=args.accounts, days=60, as_of=AS_OF,
                                    id_prefix="ACC-", user_level_days=0):
        if kind != "touches":
            import_csv(engine, kind, path)
    service.score(AS_OF)
    drafting = Drafting(service)
    started = time.perf_counter()
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    plan_s = time.perf_counter() - started
    results: dict[str, Any] = {
        "accounts": args.accounts, "nproc": os.cpu_count(), "load_before": os.getloadavg()[0],
        "plan": {"drafts": len(plan.drafts), "skipped": len(plan.skipped), "seconds": round(plan_s, 2),
                 "drafts_per_s": round(len(plan.drafts) / plan_s)},
    }
    # apply the first N: skip the rest of the plan so the run lasts a few minutes, not an hour
    keep = {to for to, _ in plan.drafts[: args.apply_drafts]}
    items = m.table_of(m.PlanItem)
    with engine.begin() as conn:
        conn.execute(update(items).where(items.c.plan_id == plan.plan_id, items.c.state == "pending",
                                         items.c.contact_email.not_in(keep)).values(state="skipped",
                                                                                   reason="benchmark"))
    with FakeGoogle(quota_units_per_minute=args.quota) as fake:
        cred = folder / "google.json"
        cred.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                                    "refresh_token": "r", "token_uri": fake.token_url}))
        settings = Settings(GOOGLE_APPLICATION_CREDENTIALS=str(cred), KEEPWELL_GOOGLE_API_URL=fake.root_url)
        store = GmailStore.from_settings(settings, config.drafts, None)
        started, t0 = time.perf_counter(), time.monotonic()
        summary = drafting.apply(plan.plan_id, store)
        apply_s, t1 = time.perf_counter() - started, time.monotonic()
        creates = sorted(c.at for c in fake.calls_to("gmail.users.drafts.create"))
        # steady state: whole minutes after the first (whose empty window lets a minute's quota through
        # at once); a sliding minute refills in the rhythm it was spent, so only whole minutes average
        minutes = int((t1 - (t0 + 60)) // 60)
        steady = [t for t in creates if t0 + 60 <= t < t0 + 60 + 60 * minutes]
        steady_rate = len(steady) / (60 * minutes) if minutes >= 1 else None
        on_server = Counter(d["message_id_header"] for d in fake.drafts())
        rate = summary.created / apply_s
        ceiling = args.quota / 10 / 60
        results["apply"] = {
            "drafts": summary.created, "seconds": round(apply_s, 1), "drafts_per_s": round(rate, 2),
            "ceiling_per_s": round(ceiling, 2),
            "steady_drafts_per_s": round(steady_rate, 2) if steady_rate else None,
            "steady_ratio_to_ceiling": round(steady_rate / ceiling, 3) if steady_rate else None,
            "duplicates": sum(n - 1 for n in on_server.values()), "missing": summary.created - len(on_server),
            "rate_limited": len([c for c in fake.calls if "429" in str(getattr(c, "status", ""))]),
        }
    results["load_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"drafts-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json").write_text(
        json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
