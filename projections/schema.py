"""The read-model tables (SQLAlchemy Core). Every row here can be rebuilt from the event log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    Uuid,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Bump whenever a table below changes: on start-up, read models of another version are
# dropped and rebuilt from the event log (the event log itself never changes shape).
SCHEMA_VERSION = 3

metadata = MetaData()

schema_version = Table(
    "projection_schema",
    metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=False),
)

positions = Table(
    "projection_positions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

tokens = Table(
    "rm_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("lookup_id", String(32), nullable=False, unique=True),
    # argon2id hash, needed by verification; never leaves the process through any API.
    Column("secret_hash", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", UTCDateTime),
    Column("regenerated_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Column("revoke_reason", String(32)),
)

last_used = Table(
    "rm_last_used",
    metadata,
    Column("token_id", Uuid, primary_key=True),
    Column("last_used_at", UTCDateTime, nullable=False),
    Column("last_used_ip", String(64)),
    Column("last_used_agent", String(200)),
    Column("use_count", BigInteger, nullable=False),
    Column("scopes_exercised", String(200), nullable=False),
)

audit = Table(
    "rm_audit",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("aggregate", String(16), nullable=False),
    # The aggregate the event belongs to: a token id, or an account id.
    Column("subject_id", Uuid, nullable=False),
    Column("token_name", String(200)),
    Column("owner", String(64)),
    Column("actor", String(200)),
    Column("details", JSON, nullable=False),
    # Typed copies of what the point-in-time, exposure and report queries filter on.
    Column("scopes", String(200)),  # Created: granted; Used: exercised
    Column("expires_at", UTCDateTime),  # Created, Regenerated
    Column("used_first", UTCDateTime),  # Used
    Column("used_last", UTCDateTime),  # Used
    Column("use_count", BigInteger),  # Used: uses in the window
    Index("ix_rm_audit_subject", "subject_id", "position"),
    Index("ix_rm_audit_owner", "owner", "position"),
    Index("ix_rm_audit_type", "event_type", "position"),
    Index("ix_rm_audit_at", "at"),
    Index("ix_rm_audit_used_last", "event_type", "used_last"),
)

# Distinct clients per token and when each scope was last exercised: small tables that let
# the compliance report run in time proportional to the number of tokens, not of events.
token_clients = Table(
    "rm_token_clients",
    metadata,
    Column("token_id", Uuid, primary_key=True),
    Column("address", String(64), primary_key=True),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("windows", BigInteger, nullable=False),  # usage windows (Used events) it appeared in
)

token_scopes = Table(
    "rm_token_scopes",
    metadata,
    Column("token_id", Uuid, primary_key=True),
    Column("scope", String(32), primary_key=True),
    Column("first_exercised", UTCDateTime, nullable=False),
    Column("last_exercised", UTCDateTime, nullable=False),
)

# The hash chain over the notification log (tamper evidence): each digest covers the previous
# digest and the stored event at that position.
chain = Table(
    "rm_chain",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),
)

accounts = Table(
    "rm_accounts",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("account_id", Uuid, nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Not a projection: recent failed sign-ins and leak reports, shared by every server worker so a
# limit holds whichever process answers. Rows older than the limiter's window are pruned.
throttle = Table(
    "throttle_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("limiter", String(32), nullable=False),
    Column("key", String(512), nullable=False),
    Column("at", Float, nullable=False),  # seconds since the epoch
    Index("ix_throttle_events_key", "limiter", "key", "at"),
)
