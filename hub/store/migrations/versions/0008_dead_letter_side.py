"""Dead letters: which side refused the record (``side``), the source or the destination.

A source's reject keeps the source row (replayed by mapping it again); a destination's keeps
the canonical record it refused (replayed by writing it again). Existing rows are the source's.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("side", sa.String(20), nullable=False, server_default="source"))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("side")
