"""Security and audit: the hash-chained audit log, each member's data key (wrapped by the master
key), and which member's key a vault secret is sealed under.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_table(
        "data_keys",
        sa.Column("member", sa.String(length=64), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("member", name="pk_data_keys"),
    )
    with op.batch_alter_table("vault_secrets") as batch:
        batch.add_column(sa.Column("member", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vault_secrets") as batch:
        batch.drop_column("member")
    op.drop_table("data_keys")
    op.drop_table("audit_log")
