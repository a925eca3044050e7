"""Inbound webhooks: the inbox of pushed raw records, the signatures already accepted (replays
refused), and the routes whose records arrive pushed (``inbound``).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.add_column(
            sa.Column("inbound", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "inbox",
        sa.Column("id", Id, nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=64), nullable=True),
        sa.Column("raws", sa.JSON(), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inbox"),
    )
    op.create_index("ix_inbox_connection_stream_id", "inbox", ["connection", "stream", "id"])
    op.create_index("ix_inbox_connection_digest", "inbox", ["connection", "digest"])
    op.create_table(
        "inbound_signatures",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_inbound_signatures"),
    )
    op.create_index("ix_inbound_signatures_expires_at", "inbound_signatures", ["expires_at"])


def downgrade() -> None:
    op.drop_table("inbound_signatures")
    op.drop_index("ix_inbox_connection_digest", table_name="inbox")
    op.drop_index("ix_inbox_connection_stream_id", table_name="inbox")
    op.drop_table("inbox")
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("inbound")
