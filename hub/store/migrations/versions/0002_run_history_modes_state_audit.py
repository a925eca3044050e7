"""Sync modes, run history (retries, deletes, cancellation), full-refresh generations, state
audit, dead-letter resolutions.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(length=32), nullable=False, server_default="incremental")
        )
        batch.add_column(
            sa.Column("lookback_seconds", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("call_timeout_seconds", sa.Float(), nullable=False, server_default="300")
        )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("records_deleted", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("stream_states") as batch:
        batch.add_column(sa.Column("generation", Id, nullable=True))
        batch.add_column(
            sa.Column("cycle_complete", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("resolution", sa.Text(), nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "state_changes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("state_before", sa.JSON(), nullable=True),
        sa.Column("state_after", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_changes")),
    )
    op.create_index(op.f("ix_state_changes_route"), "state_changes", ["route"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_state_changes_route"), table_name="state_changes")
    op.drop_table("state_changes")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("resolution")
    with op.batch_alter_table("stream_states") as batch:
        batch.drop_column("cycle_complete")
        batch.drop_column("generation")
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("call_timeout_seconds")
        batch.drop_column("lookback_seconds")
        batch.drop_column("mode")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancel_requested")
        batch.drop_column("records_deleted")
        batch.drop_column("retries")
