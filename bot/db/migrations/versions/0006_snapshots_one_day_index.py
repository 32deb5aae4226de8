"""health snapshots: one index for a day's rows, no foreign key

`keepwell score` writes every account's snapshot each day. PostgreSQL checked the foreign key with a
locking lookup of the account per row, and kept two indexes led by the day besides the primary key:
storing 10,000 snapshots took 100-120 ms of the server, against 45-52 ms with one index and no key.
The one index (day, account, score, band, zones) serves everything the two did: the day's rows, its
lowest scores, and the digest's movers without touching the wide rows. Snapshots go with their
accounts in `Book.delete_accounts`, as usage does (0004).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 04:20:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
import bot.db.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TABLE = "health_snapshots"
DAY_INDEX = "ix_health_snapshots_day"
DAY_COLUMNS = ["as_of", "account_pk", "score", "band", "danger_zone", "forgotten_zone"]
OLD_INDEXES = [("ix_health_snapshots_as_of", ["as_of", "score"]),
               ("ix_health_snapshots_states", ["as_of", "account_pk", "band", "danger_zone", "forgotten_zone"])]


def _shape(with_fk: bool) -> sa.Table:
    """The table as it is to be (SQLite rebuilds a table to change a constraint)."""
    fk = [sa.ForeignKeyConstraint(["account_pk"], ["accounts.id"], ondelete="CASCADE")] if with_fk else []
    return sa.Table(
        TABLE, sa.MetaData(),
        sa.Column("account_pk", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("band", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("danger_zone", sa.Boolean(), nullable=False),
        sa.Column("forgotten_zone", sa.Boolean(), nullable=False),
        sa.Column("stickiness", sa.Float(), nullable=True),
        sa.Column("engagement", sa.Float(), nullable=True),
        sa.Column("peer", sa.Boolean(), nullable=False),
        sa.Column("drivers", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("computed_at", bot.db.types.UTCDateTime(), nullable=False),
        *fk, sa.PrimaryKeyConstraint("account_pk", "as_of"), sqlite_with_rowid=False,
    )


def _foreign_keys() -> list[str]:
    return [fk["name"] for fk in sa.inspect(op.get_bind()).get_foreign_keys(TABLE) if fk["name"]]


def upgrade() -> None:
    for name, _ in OLD_INDEXES:
        op.drop_index(name, table_name=TABLE)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, copy_from=_shape(with_fk=False), recreate="always",
                                  table_kwargs={"sqlite_with_rowid": False}):
            pass
    else:
        for fk in _foreign_keys():
            op.drop_constraint(fk, TABLE, type_="foreignkey")
    op.create_index(DAY_INDEX, TABLE, DAY_COLUMNS)


def downgrade() -> None:
    op.drop_index(DAY_INDEX, table_name=TABLE)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(TABLE, copy_from=_shape(with_fk=True), recreate="always",
                                  table_kwargs={"sqlite_with_rowid": False}):
            pass
    else:
        op.create_foreign_key(f"{TABLE}_account_pk_fkey", TABLE, "accounts", ["account_pk"], ["id"],
                              ondelete="CASCADE")
    for name, columns in OLD_INDEXES:
        op.create_index(name, TABLE, columns)
