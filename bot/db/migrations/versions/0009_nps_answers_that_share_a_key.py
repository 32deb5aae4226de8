"""NPS answers that share account, email, day and touchpoint

A survey export may hold two anonymous answers for one account on one day: the file was refused as
repeating a key. Each answer now also carries its rank among the file's answers with the same
account, email, day and touchpoint (`nth`, 1 for the first), which joins the key: the same file
imported again finds every answer under the key it had.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 00:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

KEY = ["account_pk", "email", "day", "touchpoint"]


def upgrade() -> None:
    with op.batch_alter_table("nps_responses") as batch:
        batch.add_column(sa.Column("nth", sa.Integer(), nullable=False, server_default="1"))
        batch.drop_constraint("uq_nps_key", type_="unique")
        batch.create_unique_constraint("uq_nps_key", [*KEY, "nth"])


def downgrade() -> None:
    op.execute("DELETE FROM nps_responses WHERE nth > 1")  # the old key holds one answer only
    with op.batch_alter_table("nps_responses") as batch:
        batch.drop_constraint("uq_nps_key", type_="unique")
        batch.create_unique_constraint("uq_nps_key", KEY)
        batch.drop_column("nth")
