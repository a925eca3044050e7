"""Usage ledger for billing: the meters a service measures; subjects, local days, billing periods and adjustments on events;
daily rollups; closed months; statements frozen at close; the cooperative's settings.

Events already in the ledger get their UTC day and month (the cooperative's time zone was not
recorded before), and the rollups are built from them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("meters", sa.JSON(), nullable=True))
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(
            sa.Column("subject", sa.String(length=200), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("day", sa.Date(), nullable=True))
        batch.add_column(sa.Column("period", sa.String(length=7), nullable=True))
        batch.add_column(
            sa.Column("adjusts", sa.String(length=7), nullable=False, server_default="")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE usage_events SET day = (occurred_at AT TIME ZONE 'UTC')::date, "
            "period = to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM')"
        )
    else:  # SQLite keeps naive UTC text
        op.execute(
            "UPDATE usage_events SET day = date(occurred_at), period = substr(occurred_at, 1, 7)"
        )
    with op.batch_alter_table("usage_events") as batch:
        batch.alter_column("day", existing_type=sa.Date(), nullable=False)
        batch.alter_column("period", existing_type=sa.String(length=7), nullable=False)
    op.create_table(
        "usage_daily",
        sa.Column("member", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("adjusts", sa.String(length=7), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("maximum", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "member",
            "service",
            "meter",
            "day",
            "subject",
            "period",
            "adjusts",
            name=op.f("pk_usage_daily"),
        ),
    )
    op.create_index("ix_usage_daily_period_member", "usage_daily", ["period", "member"])
    op.execute(
        "INSERT INTO usage_daily (member, service, meter, day, subject, period, adjusts, "
        "quantity, events, maximum) SELECT member, service, meter, day, subject, period, adjusts, "
        "SUM(quantity), COUNT(*), MAX(quantity) FROM usage_events "
        "GROUP BY member, service, meter, day, subject, period, adjusts"
    )
    op.create_table(
        "closed_months",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("closed_as", sa.String(length=20), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_closed_months")),
    )
    op.create_table(
        "statements",
        sa.Column("period", sa.String(length=20), nullable=False),
        sa.Column("member", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("total", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("period", "member", name=op.f("pk_statements")),
    )
    op.create_table(
        "cooperative",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("fiscal_year_start", sa.String(length=5), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_cooperative")),
    )


def downgrade() -> None:
    op.drop_table("cooperative")
    op.drop_table("statements")
    op.drop_table("closed_months")
    op.drop_index("ix_usage_daily_period_member", table_name="usage_daily")
    op.drop_table("usage_daily")
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("adjusts")
        batch.drop_column("period")
        batch.drop_column("day")
        batch.drop_column("subject")
    with op.batch_alter_table("services") as batch:
        batch.drop_column("meters")
