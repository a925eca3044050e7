"""Schedules and claims for `cohub run`: a route's schedule, restart policy and stall limit; a
run's schedule slot (one run per route and slot), lease and heartbeat; the live workers.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.add_column(sa.Column("schedule", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("restart", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("stall_seconds", sa.Float(), nullable=False, server_default="900")
        )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("takeovers", sa.Integer(), nullable=False, server_default="0"))
        batch.create_unique_constraint("uq_runs_route", ["route", "scheduled_for"])
        batch.create_index("ix_runs_status_lease", ["status", "lease_expires_at"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_runs", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("lease_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_status_lease")
        batch.drop_constraint("uq_runs_route", type_="unique")
        for column in ("takeovers", "heartbeat_at", "lease_expires_at", "scheduled_for"):
            batch.drop_column(column)
    with op.batch_alter_table("routes") as batch:
        for column in ("stall_seconds", "restart", "schedule"):
            batch.drop_column(column)
