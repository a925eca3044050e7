"""The hub's tables (SQLAlchemy Core): configuration, runs, state, dead letters, usage ledger.

Alembic migrations in ``hub/store/migrations`` create exactly these; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from hub.store.types import DecimalText, ScaledDecimal, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger ids that stay INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
Id = BigInteger().with_variant(Integer(), "sqlite")
#: Decimal places a usage quantity keeps: the ledger stores millionths, exactly.
QUANTITY_PLACES = 6
Quantity = ScaledDecimal(QUANTITY_PLACES)

members = Table(
    "members",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("nces_id", String(20)),
    Column("state_code", String(40)),
    Column("enrollment", Integer),
    Column("employees", Integer),
)

services = Table(
    "services",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("coser", String(40)),
    # Meters measured for its routes besides the hub's own; NULL: every meter.
    Column("meters", JSON),
)

connections = Table(
    "connections",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("connector", String(64), nullable=False),
    Column("member", String(64), ForeignKey("members.code")),
    Column("description", Text, nullable=False, default=""),
    Column("options", JSON, nullable=False),
    # Secret *references* (env:NAME, vault:NAME), never values.
    Column("secrets", JSON, nullable=False),
    Column("base_dir", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    # "config": `cohub apply` owns it; "api": created through the API, which apply leaves alone.
    Column("managed_by", String(20), nullable=False, default="config", server_default="config"),
)

routes = Table(
    "routes",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("source", String(64), ForeignKey("connections.name"), nullable=False),
    Column("source_stream", String(64), nullable=False),
    Column("destination", String(64), ForeignKey("connections.name"), nullable=False),
    Column("destination_stream", String(64), nullable=False),
    Column("service", String(64), ForeignKey("services.code"), nullable=False),
    Column("transforms", JSON, nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("mode", String(32), nullable=False, default="incremental", server_default="incremental"),
    Column("lookback_seconds", Integer, nullable=False, default=0, server_default="0"),
    Column("call_timeout_seconds", Float, nullable=False, default=300.0, server_default="300"),
    Column("parallel_reads", Integer, nullable=False, default=1, server_default="1"),
    Column("enabled", Boolean, nullable=False, default=True),
    # When `cohub run` starts the route (None: only by hand), and what it does after a failure.
    Column("schedule", JSON),
    Column("restart", JSON),
    Column("stall_seconds", Float, nullable=False, default=900.0, server_default="900"),
    # "config": `cohub apply` owns it; "api": created through the API, which apply leaves alone.
    Column("managed_by", String(20), nullable=False, default="config", server_default="config"),
    # Its records are pushed to /inbound/<source> and read from the inbox, not polled.
    Column("inbound", Boolean, nullable=False, default=False, server_default=false()),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("route", String(64), nullable=False, index=True),
    Column("member", String(64)),
    Column("service", String(64), nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    # host:pid of the process running it, so a run left behind by a dead process is recognised.
    Column("worker", String(200)),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("state_before", JSON),
    Column("state_after", JSON),
    Column("records_read", Integer, nullable=False, default=0),
    Column("records_written", Integer, nullable=False, default=0),
    Column("records_rejected", Integer, nullable=False, default=0),
    Column("batches", Integer, nullable=False, default=0),
    Column("error", Text),
    # Calls to vendor systems that were retried (the SDK's HTTP toolkit counts them).
    Column("retries", Integer, nullable=False, default=0, server_default="0"),
    Column("records_deleted", Integer, nullable=False, default=0, server_default="0"),
    # Set by `cohub runs cancel`; the run stops at its next batch boundary.
    Column("cancel_requested", Boolean, nullable=False, default=False, server_default=false()),
    # The schedule slot a daemon run was started for: one run per (route, slot), on any worker.
    Column("scheduled_for", UtcDateTime()),
    # The claim: its holder (`worker`) renews it by heartbeat; once it lapses, another worker
    # takes the run over from its last checkpoint.
    Column("lease_expires_at", UtcDateTime()),
    Column("heartbeat_at", UtcDateTime()),
    Column("takeovers", Integer, nullable=False, default=0, server_default="0"),
    UniqueConstraint("route", "scheduled_for"),
    Index("ix_runs_status_lease", "status", "lease_expires_at"),
)

# One row per `cohub run` process, kept fresh by its heartbeat.
workers = Table(
    "workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    Column("max_runs", Integer, nullable=False),
    Column("running", Integer, nullable=False, default=0),
    # Runs due and waiting for room, as of the last heartbeat (the queue depth /metrics shows).
    Column("queued", Integer, nullable=False, default=0, server_default="0"),
    # A worker whose heartbeat is older than its lease is gone (crashed, killed, cut off).
    Column("lease_seconds", Float, nullable=False),
)

# One row per route: where the next run resumes. Written only together with a batch's usage.
stream_states = Table(
    "stream_states",
    metadata,
    Column("route", String(64), primary_key=True),
    Column("stream", String(64), nullable=False),
    Column("state", JSON, nullable=False),
    Column("run_id", Id, ForeignKey("runs.id")),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Full refreshes: the run that began the current full read, and whether that read finished.
    Column("generation", Id),
    Column("cycle_complete", Boolean, nullable=False, default=False, server_default=false()),
)

# Every manual change of a route's state (`cohub state set|reset`), with the state before.
state_changes = Table(
    "state_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("route", String(64), nullable=False, index=True),
    Column("action", String(20), nullable=False),
    Column("state_before", JSON),
    Column("state_after", JSON),
    Column("actor", String(200), nullable=False),
    Column("changed_at", UtcDateTime(), nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("runs.id"), nullable=False),
    Column("route", String(64), nullable=False),
    Column("member", String(64)),
    Column("stream", String(64), nullable=False),
    Column("position", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", JSON, nullable=False),
    # Who refused the record: "source" (raw is the source row, replay maps it again) or
    # "destination" (raw is the canonical record it refused, replay writes it again).
    Column("side", String(20), nullable=False, default="source", server_default="source"),
    Column("status", String(20), nullable=False, default="open"),
    Column("created_at", UtcDateTime(), nullable=False),
    # How it left the open list: "replayed in run N", "discarded by NAME".
    Column("resolution", Text),
    Column("resolved_at", UtcDateTime()),
    Index("ix_dead_letters_route_status", "route", "status"),
)

# Requests vendors pushed to /inbound/<connection>: the raw records they carry, read by the runs
# of the inbound routes of (connection, stream) after their checkpoints. `raws` is the list of raw
# records sealed under the member's data key (an envelope like a dead letter's), NULL once every
# route reading it has a committed checkpoint past it; the row stays that long plus the dedup
# window, so a vendor's retry of the same body (`digest`) is stored once.
inbox = Table(
    "inbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connection", String(64), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("member", String(64)),
    Column("raws", JSON),
    Column("records", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("delivered_at", UtcDateTime()),
    Index("ix_inbox_connection_stream_id", "connection", "stream", "id"),
    Index("ix_inbox_connection_digest", "connection", "digest"),
)

# Signatures of accepted signed pushes, hashed, until their timestamp leaves the tolerance window:
# the same signed request sent again within the window is refused as a replay, by every process.
inbound_signatures = Table(
    "inbound_signatures",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("connection", String(64), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
)

# Append-only: a duplicate idempotency key is ignored, so a retried batch is never billed twice.
usage_events = Table(
    "usage_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False),
    Column("member", String(64), nullable=False),
    Column("service", String(64), nullable=False),
    Column("meter", String(64), nullable=False),
    Column("quantity", Quantity, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("route", String(64)),
    Column("run_id", Id),
    # What a unique-count or per-subject meter counts (an employee, a supplier's contract).
    Column("subject", String(200), nullable=False, server_default=""),
    # The cooperative's local day, and the month the event is billed in: its own month, or the
    # next open one when its own was closed, with the closed month in `adjusts`.
    Column("day", Date, nullable=False),
    Column("period", String(7), nullable=False),
    Column("adjusts", String(7), nullable=False, server_default=""),
    UniqueConstraint("idempotency_key"),
    Index("ix_usage_events_member_service_meter", "member", "service", "meter"),
)

# Usage per member, service, meter, day and subject, kept current in the transaction that appends
# the events, so reports never scan the events (how much smaller it is depends on how many events
# share a day: bench/billing.py).
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("member", String(64), primary_key=True),
    Column("service", String(64), primary_key=True),
    Column("meter", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("subject", String(200), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("adjusts", String(7), primary_key=True),
    Column("quantity", Quantity, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("maximum", Quantity, nullable=False),
    Index("ix_usage_daily_period_member", "period", "member"),
)

# Months frozen by `cohub billing close`: usage for them is billed in the next open month.
closed_months = Table(
    "closed_months",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("closed_as", String(20), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=False),
    Column("closed_by", String(200), nullable=False),
)

# A period's statement per member as it was when the period was closed, with the fingerprint of
# its inputs, so a later recomputation can show it still comes to the same cent.
statements = Table(
    "statements",
    metadata,
    Column("period", String(20), primary_key=True),
    Column("member", String(64), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("total", DecimalText(), nullable=False),
    Column("body", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# The cooperative's own settings that the engine needs without the configuration folder.
cooperative = Table(
    "cooperative",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("fiscal_year_start", String(5), nullable=False),
)

# Secrets referenced as vault:NAME: Fernet-encrypted under the master key, or, for a member's
# connection, sealed under that member's data key (`member`).
vault_secrets = Table(
    "vault_secrets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("member", String(64)),
)

# Each member's data key (AES-256-GCM), wrapped (Fernet) by the master key. Purging a member
# destroys its key (`wrapped` NULL, `destroyed_at` set): what was sealed under it is unreadable.
data_keys = Table(
    "data_keys",
    metadata,
    Column("member", String(64), primary_key=True),
    Column("wrapped", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("destroyed_at", UtcDateTime()),
)

# Append-only record of who changed what: each entry's `hash` covers its content and the previous
# entry's hash, so `cohub audit verify` finds an edited, removed or reordered entry.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False),
    # What changed, never a secret value.
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# API tokens: `id` is public (it prefixes the token); only a SHA-256 of the secret part is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    # admin | operator | billing | viewer; a viewer sees one member's data (`member`).
    Column("role", String(20), nullable=False),
    Column("member", String(64)),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("last_used_at", UtcDateTime()),
    Column("expires_at", UtcDateTime()),
    Column("revoked_at", UtcDateTime()),
)

# Console sign-ins: the cookie holds a random session id, the table only its SHA-256.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_id", String(32), ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False),
    # Echoed in every console form: a request from another site cannot know it.
    Column("csrf", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)
