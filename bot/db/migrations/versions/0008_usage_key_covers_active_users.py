"""usage_daily's primary key covers active_users (PostgreSQL)

A score reads each account's days of the usage window from the primary key (account_pk, day), and
with it the day's active users. On PostgreSQL the key did not hold them, so every row was fetched
from the table as well: cheap while an account's days lie together, as after one import of a file
in account order, but a book kept up to date by daily imports lies in the table day after day, and
an account's 60 days were then 60 pages apart. On such a book (10k accounts x 365 days) a score took
0.63-0.82 s against 0.31-0.39 s on the same rows in account order; with the key covering the column
(and the visibility map set, see `bot.importer.run`) it takes 0.32-0.38 s whatever the order.

SQLite needs nothing: its usage tables are WITHOUT ROWID, stored in the key's order with every column.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 22:50:00
"""

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _key(include: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # one statement: the table is never without its key, and the index is built once
    op.execute("ALTER TABLE usage_daily DROP CONSTRAINT usage_daily_pkey, "
               f"ADD CONSTRAINT usage_daily_pkey PRIMARY KEY (account_pk, day){include}")


def upgrade() -> None:
    _key(" INCLUDE (active_users)")


def downgrade() -> None:
    _key("")
