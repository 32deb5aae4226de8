"""usage tables without foreign keys

The usage tables hold tens of millions of rows; PostgreSQL checked their foreign key with one locking
lookup per inserted row (11 s of a 16 s load of 3M rows). The importer resolves every account within
the import's transaction and `Book.delete_accounts` removes usage with its accounts instead.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 23:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

KEYS = {"usage_daily": ("account_pk", "day"), "usage_users": ("account_pk", "day", "user_id")}


def _columns(name: str) -> list[sa.Column]:
    """The columns after the account key."""
    if name == "usage_daily":
        return [sa.Column("day", sa.Date(), nullable=False),
                sa.Column("active_users", sa.Integer(), nullable=False),
                sa.Column("events", sa.Integer(), nullable=False)]
    return [sa.Column("day", sa.Date(), nullable=False),
            sa.Column("user_id", sa.String(length=200), nullable=False),
            sa.Column("events", sa.Integer(), nullable=False)]


def _shape(name: str, with_fk: bool) -> sa.Table:
    """The table as it is to be (SQLite rebuilds tables to change a constraint)."""
    fk = [sa.ForeignKeyConstraint(["account_pk"], ["accounts.id"], ondelete="CASCADE")] if with_fk else []
    return sa.Table(name, sa.MetaData(), sa.Column("account_pk", sa.Integer(), nullable=False),
                    *_columns(name), *fk, sa.PrimaryKeyConstraint(*KEYS[name]), sqlite_with_rowid=False)


def _foreign_keys(name: str) -> list[str]:
    return [fk["name"] for fk in sa.inspect(op.get_bind()).get_foreign_keys(name) if fk["name"]]


def upgrade() -> None:
    for name in KEYS:
        if op.get_bind().dialect.name == "sqlite":
            with op.batch_alter_table(name, copy_from=_shape(name, with_fk=False), recreate="always",
                                      table_kwargs={"sqlite_with_rowid": False}):
                pass
        else:
            for fk in _foreign_keys(name):
                op.drop_constraint(fk, name, type_="foreignkey")


def downgrade() -> None:
    for name in KEYS:
        if op.get_bind().dialect.name == "sqlite":
            with op.batch_alter_table(name, copy_from=_shape(name, with_fk=True), recreate="always",
                                      table_kwargs={"sqlite_with_rowid": False}):
                pass
        else:
            op.create_foreign_key(f"{name}_account_pk_fkey", name, "accounts", ["account_pk"], ["id"],
                                  ondelete="CASCADE")
