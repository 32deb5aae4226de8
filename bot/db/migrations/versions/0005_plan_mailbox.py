"""the mailbox a draft plan's drafts go to

Fixed by the plan's first apply that names one, so a plan resumed by another person (or pressed by two
at once) never splits between mailboxes, and a draft left in flight is looked up where it was made.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('draft_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mailbox', sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('draft_plans', schema=None) as batch_op:
        batch_op.drop_column('mailbox')
