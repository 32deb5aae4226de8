"""Plain helpers for the importer tests: table snapshots and the seed book."""

from __future__ import annotations

import codecs
from typing import Any

from sqlalchemy import Engine, select, text
from sqlmodel import SQLModel

import bot.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)

# Every table an import can write, and the columns that identify a row in it (for stable ordering).
TABLES = {
    "accounts": "account_id",
    "contacts": "email",
    "usage_daily": "account_pk, day",
    "usage_users": "account_pk, day, user_id",
    "nps_responses": "account_pk, email, day, touchpoint, nth",
    "tickets": "ticket_id",
    "invoices": "invoice_id",
    "mrr_history": "account_pk, month",
    "touches": "account_pk, day, channel, team, contact_email, kind, ref",
    "account_team": "account_pk, member",
}

# Two accounts every test can reference: A1 owns acme.com, A2 owns globex.com.
SEED_ACCOUNTS = """account_id,name,start_date,domain
A1,Acme,2024-01-01,acme.com
A2,Globex,2024-02-01,globex.com
"""


def rows(engine: Engine, table: str, *, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every row of a table, as dicts in key order, without the `exclude`d columns."""
    with engine.connect() as conn:
        result = conn.execute(text(f"SELECT * FROM {table} ORDER BY {TABLES[table]}"))
        return [{k: v for k, v in row._mapping.items() if k not in exclude} for row in result]


def counts(engine: Engine) -> dict[str, int]:
    """How many rows each importable table holds."""
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES}


def snapshot(engine: Engine, *, exclude: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """The full contents of every importable table (without the `exclude`d columns)."""
    return {t: rows(engine, t, exclude=exclude) for t in TABLES}


def account_pks(engine: Engine) -> dict[str, int]:
    """account_id → accounts.id."""
    with engine.connect() as conn:
        return {a: pk for a, pk in conn.execute(text("SELECT account_id, id FROM accounts"))}


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


NAME = "Société “Nord” Straße – Zürich"  # “ ” – are 0x93 0x94 0x96 in Windows-1252

# How a fixture is written → what detect_encoding must answer.
ENCODINGS = {
    "utf-8": "utf-8",
    "utf-8-bom": "utf-8-sig",
    "utf-16": "utf-16",  # Python's own: a BOM, then the platform's byte order
    "utf-16-le-bom": "utf-16",
    "utf-16-be-bom": "utf-16",
    "windows-1252": "cp1252",
}


def encode(text_: str, how: str) -> bytes:
    """The text as a customer's tool would save it, `how` being one of ENCODINGS."""
    if how == "utf-8-bom":
        return codecs.BOM_UTF8 + text_.encode("utf-8")
    if how == "utf-16-le-bom":
        return codecs.BOM_UTF16_LE + text_.encode("utf-16-le")
    if how == "utf-16-be-bom":
        return codecs.BOM_UTF16_BE + text_.encode("utf-16-be")
    return text_.encode({"windows-1252": "cp1252"}.get(how, how))


def stored(
    engine: Engine, table: str, *, exclude: tuple[str, ...] = ("id", "updated_at")
) -> list[dict[str, Any]]:
    """A table's rows read through the models' types (dates, Decimals, aware UTC datetimes), in key
    order, with account_pk shown as `account` (the account's account_id)."""
    t = SQLModel.metadata.tables[table]
    names = {pk: a for a, pk in account_pks(engine).items()}
    with engine.connect() as conn:
        result = conn.execute(select(t).order_by(*(t.c[c.strip()] for c in TABLES[table].split(","))))
        out = []
        for row in result.mappings():
            item = {k: v for k, v in row.items() if k not in exclude}
            if "account_pk" in item:
                item["account"] = names.get(item.pop("account_pk"))
            out.append(item)
    return out
