"""The history tables (SQLAlchemy Core). Append-only except rollouts' current phase, actions' results and the
Flagger webhook releases (one row per release, rewritten by each call).

The database is built and upgraded by the Alembic migrations in `migrations/` (`analyzer.store.migrate`);
a change here needs a new revision there, and a test checks the two agree.

The same schema runs on SQLite (embedded default) and PostgreSQL. JSON columns use the generic
JSON type, which is `json` (text kept verbatim) on PostgreSQL, so floats read back exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC; naive values are taken as UTC. Always reads back timezone-aware UTC
    (SQLite keeps no offset, PostgreSQL returns the session's zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id() -> Column[int]:
    return Column("id", Id, primary_key=True, autoincrement=True)


rollouts = Table(
    "rollouts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(253), nullable=False),
    Column("namespace", String(253), nullable=False),
    Column("baseline_subset", String(253), nullable=False),
    Column("canary_subset", String(253), nullable=False),
    Column("spec_text", Text, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("initial_state", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("interval_seconds", Double, nullable=False),  # the spec's tick interval
    # Current phase/outcome, kept in step with the last tick inside record_intent's transaction.
    Column("phase", String(32), nullable=False),
    Column("outcome", String(32)),
    Column("finished_at", UtcDateTime),
    Index("ix_rollouts_name_created", "name", "created_at"),
    Index("ix_rollouts_phase", "phase"),
    Index("ix_rollouts_finished", "finished_at"),  # migration 0002
)

ticks = Table(
    "ticks",
    metadata,
    _id(),
    Column("rollout_id", String(200), ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
    Column("tick", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),  # decision time (the engine's clock, virtual in simulations)
    Column("recorded_at", UtcDateTime, nullable=False),  # wall clock
    Column("phase", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("weights", JSON, nullable=False),
    Column("canary_weight", Integer),
    Column("header_route", Boolean, nullable=False),
    Column("decision", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", JSON, nullable=False),
    Column("obs_start", UtcDateTime),
    Column("obs_end", UtcDateTime),
    Column("baseline_requests", BigInteger),
    Column("baseline_errors", BigInteger),
    Column("baseline_le", JSON),
    Column("canary_requests", BigInteger),
    Column("canary_errors", BigInteger),
    Column("canary_le", JSON),
    Column("stale_series", JSON),
    Column("observation", JSON),  # the full observation (edges, custom values) for exact replay
    # Not unique: the engine may record a follow-up decision (e.g. Failed) under the same tick number.
    Index("ix_ticks_rollout_tick", "rollout_id", "tick"),
)

verdicts = Table(
    "verdicts",
    metadata,
    _id(),
    Column("tick_id", Id, ForeignKey("ticks.id", ondelete="CASCADE"), nullable=False),
    Column("metric", String(200), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("gate", Boolean, nullable=False),
    # Non-finite values: PostgreSQL keeps inf/nan; SQLite keeps inf and stores nan as NULL.
    # The exact values are always in `data`.
    Column("e_value", Double),
    Column("threshold", Double),
    Column("promotion_e_value", Double),
    Column("ratio", Double),
    Column("ci_lo", Double),
    Column("ci_hi", Double),
    Column("reason", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("data", JSON, nullable=False),  # the whole MetricVerdict, codec-encoded
    Index("ix_verdicts_tick", "tick_id"),
)

actions = Table(
    "actions",
    metadata,
    _id(),
    Column("tick_id", Id, ForeignKey("ticks.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String(32), nullable=False),
    Column("action", JSON, nullable=False),
    Column("ok", Boolean),  # NULL = intended, result not recorded yet
    Column("error", Text),
    Column("done_at", UtcDateTime),
    UniqueConstraint("tick_id", "seq", name="uq_actions_tick_seq"),
)

events = Table(
    "events",
    metadata,
    _id(),
    Column("rollout_id", String(200), ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
    Column("tick", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_events_rollout", "rollout_id", "id"),
)

# ---- the daemon's control tables: operator commands, idempotency keys, leases ----

commands = Table(
    "commands",
    metadata,
    _id(),
    Column("rollout_id", String(200), ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
    Column("command", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # The tick number the leader claimed for the command (written before the tick); NULL = not taken yet.
    Column("tick", Integer),
    Index("ix_commands_rollout", "rollout_id", "id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("rollout_id", String(200), ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(253)),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("transitions", Integer, nullable=False),  # how often the holder changed (a fencing epoch)
)

# The VirtualService each rollout manages, so creation finds a busy route by index rather than by reading specs.
rollout_routes = Table(
    "rollout_routes",
    metadata,
    Column("rollout_id", String(200), ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True),
    Column("namespace", String(253), nullable=False),
    Column("virtual_service", String(253), nullable=False),
    Index("ix_rollout_routes_vs", "namespace", "virtual_service"),
)

# ---- Flagger webhook releases: the evidence of one release (checksum) of one canary, shared by every replica ----

hook_releases = Table(
    "hook_releases",
    metadata,
    Column("namespace", String(63), primary_key=True),
    Column("name", String(253), primary_key=True),
    Column("checksum", String(256), primary_key=True),
    Column("spec_name", String(253), nullable=False),
    Column("spec_text", Text, nullable=False),  # the spec the release began with: a later edit does not apply
    Column("evidence", JSON, nullable=False),  # codec-encoded Evidence
    Column("last_end", UtcDateTime),  # end of the last interval judged
    Column("intervals", Integer, nullable=False),
    Column("verdicts", JSON, nullable=False),  # the last interval's MetricVerdicts, codec-encoded
    Column("failed", JSON),  # the answer given once a regression was proven: it stays the answer
    # serve --sim: what rebuilds the simulated release (NULL scenario = a live release reading Prometheus)
    Column("scenario", String(100)),
    Column("seed", BigInteger),
    Column("canary_weight", Integer),
    Column("sim_state", JSON),  # the simulated mesh's random generator after the last interval
    Column("version", Integer, nullable=False),  # compare-and-set: each write expects the version it read
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),  # last call (retention drops releases not called since)
    Index("ix_hook_releases_updated", "updated_at"),
)
