"""NPS answers indexed by account and day

Scoring finds each account's latest answer in the NPS window (the last of its latest day, by import
order). With the answers indexed by account alone, every account's answers were fetched and sorted:
counting 10k accounts' answers took 60 ms on PostgreSQL and 46 ms on SQLite; read backwards from
(account, day, id) it takes 32 and 28. The index replaces the one on the account alone, which its
first column serves as well (foreign key checks, an account's answers).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 05:05:00
"""

from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_nps_responses_account_day", "nps_responses", ["account_pk", "day", "id"])
    op.drop_index("ix_nps_responses_account_pk", table_name="nps_responses")


def downgrade() -> None:
    op.create_index("ix_nps_responses_account_pk", "nps_responses", ["account_pk"])
    op.drop_index("ix_nps_responses_account_day", table_name="nps_responses")
