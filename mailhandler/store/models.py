"""Tables of the store.

Queues are tables: ``inbound_message`` (the pipeline's queue),
``notification`` (the notifier's queue) and ``shipment_poll`` (the poller's
queue) carry a lease (``lease_owner`` and ``lease_expires_at``) so that
several processes can share one database. All times are UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Index,
    LargeBinary,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware.

    SQLite has no time zones; storing naive UTC everywhere keeps SQLite and
    PostgreSQL rows comparable.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a UTC-aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


# SQLite reuses the highest row id after rows are deleted (a purged shop);
# AUTOINCREMENT never hands out an id twice, so queue ids, Message-IDs of
# updates and opt-out tokens stay unique. PostgreSQL ignores the option.
_AUTOINCREMENT = {"sqlite_autoincrement": True}


class InboundState(StrEnum):
    """The pipeline state of an inbound message."""

    QUEUED = "queued"
    PROCESSED = "processed"
    IGNORED = "ignored"
    QUARANTINED = "quarantined"
    FAILED = "failed"


class ShipmentStatus(StrEnum):
    """The canonical shipment statuses."""

    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERY_FAILED = "delivery_failed"
    EXCEPTION = "exception"
    RETURNED = "returned"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class UpdateType(StrEnum):
    """The types of customer email."""

    SHIPPED = "shipped"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERED = "delivered"
    DELAYED = "delayed"
    RETURNED = "returned"


class NotificationState(StrEnum):
    """The delivery state of a notification."""

    PENDING = "pending"
    SENT = "sent"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    # The process stopped after handing the email to the relay and before it
    # learnt the result; it is not sent again, to avoid a duplicate.
    UNCONFIRMED = "unconfirmed"


class OrderState(StrEnum):
    """Whether an order still gets updates."""

    OPEN = "open"
    CANCELLED = "cancelled"


class Shop(SQLModel, table=True):
    """A tenant: one BCC address, sender domains, language and branding."""

    __table_args__ = (_AUTOINCREMENT,)

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, index=True, max_length=64)
    name: str = Field(max_length=200)
    token: str = Field(max_length=64)
    sender_domains: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    language: str = Field(default="en", max_length=8)
    brand_color: str = Field(default="#1f2937", max_length=32)
    logo_url: str | None = Field(default=None, max_length=2000)
    # Tokens replaced by a rotation, each working until its grace period
    # ends: [{"token": "...", "expires_at": "<ISO 8601 UTC>"}].
    retired_tokens: list[dict[str, str]] = Field(
        default_factory=list, sa_column=Column(JSON)
    )
    # How a message proves it is the shop's: "domain" or "dkim".
    sender_policy: str = Field(default="domain", max_length=16)
    # What happens to a message that fails the check: "quarantine" or "reject".
    unverified_policy: str = Field(default="quarantine", max_length=16)
    # An SMTP relay for this shop's customer updates, else the default one.
    outbound: str | None = Field(default=None, max_length=500)
    # A removed shop keeps its data; its address no longer accepts mail.
    removed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class InboundMessage(SQLModel, table=True):
    """One raw message received for one shop, with its place in the pipeline."""

    __tablename__ = "inbound_message"
    __table_args__ = (
        UniqueConstraint("shop_id", "dedup_key", name="uq_inbound_shop_dedup"),
        Index("ix_inbound_queue", "state", "next_attempt_at"),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    shop_id: int = Field(foreign_key="shop.id", index=True)
    # "mid:<Message-ID>", or "sha256:<hex of the raw bytes>" without one.
    dedup_key: str = Field(max_length=1000)
    # SHA-256 of the raw bytes, to tell a retry from a different message
    # that carries the same Message-ID.
    sha256: str | None = Field(default=None, max_length=64)
    message_id: str | None = Field(default=None, max_length=1000)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int
    mail_from: str = Field(max_length=1000)
    rcpt_tos: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    peer: str | None = Field(default=None, max_length=200)
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    state: str = Field(default=InboundState.QUEUED, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    reason: str | None = None
    defects: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    kind: str | None = Field(default=None, max_length=32)
    sender_check: str | None = Field(default=None, max_length=32)
    sender_verified: bool | None = None
    sender_detail: str | None = None
    # The extraction's result (``bcctrack extract --json`` keys), for drift
    # alarms and for admins.
    extraction: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    processed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class Order(SQLModel, table=True):
    """A shop's order, identified by the shop's order number.

    The order number is None for shipments whose emails name no order (most
    carrier emails); each such shipment gets an order of its own.
    """

    __tablename__ = "shop_order"
    __table_args__ = (
        UniqueConstraint("shop_id", "order_number", name="uq_order_shop_number"),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    shop_id: int = Field(foreign_key="shop.id", index=True)
    order_number: str | None = Field(default=None, max_length=200)
    customer_email: str | None = Field(default=None, max_length=320)
    customer_name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=8)
    state: str = Field(default=OrderState.OPEN, max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Shipment(SQLModel, table=True):
    """One tracking number at one carrier, belonging to an order."""

    __table_args__ = (
        # One number can be a shipment of two orders (a combined parcel, or
        # a number the carrier issues again later).
        UniqueConstraint(
            "shop_id", "tracking_number", "order_id", name="uq_shipment_order_number"
        ),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    shop_id: int = Field(foreign_key="shop.id", index=True)
    order_id: int = Field(foreign_key="shop_order.id", index=True)
    tracking_number: str = Field(max_length=64)
    carrier: str | None = Field(default=None, max_length=32)
    # For carrier "other": the carrier's name as the shop's email printed it.
    carrier_name: str | None = Field(default=None, max_length=200)
    tracking_url: str | None = None
    status: str = Field(default=ShipmentStatus.PENDING, max_length=32)
    status_changed_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    inbound_message_id: int | None = Field(
        default=None, foreign_key="inbound_message.id"
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # The carrier's expected delivery date, from the latest poll.
    estimated_delivery: date | None = Field(
        default=None, sa_column=Column(Date(), nullable=True)
    )
    # Set when the message that named the shipment was processed again and
    # no longer names it (a rule fixed a wrong number): no polls, no updates.
    withdrawn_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class TrackingEvent(SQLModel, table=True):
    """One carrier checkpoint, or a status taken from an email."""

    __tablename__ = "tracking_event"

    __table_args__ = (_AUTOINCREMENT,)

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipment.id", index=True)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    status: str = Field(max_length=32)
    location: str | None = None
    raw_code: str | None = Field(default=None, max_length=100)
    raw_text: str | None = None
    # "email", or the carrier adapter's name.
    source: str = Field(max_length=32)
    inbound_message_id: int | None = Field(
        default=None, foreign_key="inbound_message.id"
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class Notification(SQLModel, table=True):
    """One customer email of one update type, from trigger to sent."""

    __table_args__ = (
        UniqueConstraint("shipment_id", "update", name="uq_notification_once"),
        Index("ix_notification_queue", "state", "next_attempt_at"),
        Index("ix_notification_group", "group_id"),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    shop_id: int = Field(foreign_key="shop.id", index=True)
    order_id: int = Field(foreign_key="shop_order.id", index=True)
    shipment_id: int = Field(foreign_key="shipment.id")
    update: str = Field(max_length=32)
    # The lowest notification id of the updates that go out as one email
    # (several parcels of one order), or None for an update on its own.
    group_id: int | None = None
    recipient: str = Field(max_length=320)
    state: str = Field(default=NotificationState.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # The time of the event that triggered it; too old and it is suppressed.
    event_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    reason: str | None = None
    message_id: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # Set just before the email is handed to the backend, cleared when the
    # backend rejects it.
    sending_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    sent_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class DriftAlarm(SQLModel, table=True):
    """A shop's emails of one kind stopped yielding a field they used to have.

    Open while ``resolved_at`` is None; a later email of that kind that
    yields the field again resolves it.
    """

    __tablename__ = "drift_alarm"

    __table_args__ = (_AUTOINCREMENT,)

    id: int | None = Field(default=None, primary_key=True)
    shop_id: int = Field(foreign_key="shop.id", index=True)
    kind: str = Field(max_length=32)
    field: str = Field(max_length=32)
    # The recent messages that lack the field, to look at first.
    message_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    detail: str
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    resolved_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )


class PollState(StrEnum):
    """Whether the poller still asks the carrier about a shipment."""

    ACTIVE = "active"
    STOPPED = "stopped"


class ShipmentPoll(SQLModel, table=True):
    """The poller's schedule for one shipment, claimed with a lease.

    The poller adds a row for each shipment it has not seen yet. ``attempts``
    counts the claims since the last successful poll, so that errors back
    off. ``last_news_at`` is the last time the shipment's status or events
    changed; a shipment without news for too long becomes ``expired``.
    """

    __tablename__ = "shipment_poll"
    __table_args__ = (
        Index("ix_shipment_poll_queue", "state", "next_attempt_at"),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipment.id", unique=True)
    state: str = Field(default=PollState.ACTIVE, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    polls: int = 0
    last_polled_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    last_news_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # The adapter that answered the last poll, and the last error.
    adapter: str | None = Field(default=None, max_length=32)
    last_error: str | None = None


class CarrierAccount(SQLModel, table=True):
    """Shared call budget of one credential at one carrier API.

    Every poller reserves its calls here, so that several processes together
    keep the carrier's minimum interval, daily quota and ``Retry-After``.
    ``credential`` is the credential's label (``default`` or a shop's slug).
    """

    __tablename__ = "carrier_account"
    __table_args__ = (
        UniqueConstraint("adapter", "credential", name="uq_carrier_account"),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    adapter: str = Field(max_length=32)
    credential: str = Field(max_length=100)
    next_call_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    paused_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    pause_reason: str | None = None
    # key_fingerprint() of the key the carrier rejected: a poller that starts
    # with another key resumes the credential.
    paused_key_fingerprint: str | None = Field(default=None, max_length=16)
    # Consecutive failed calls; the wait after an error doubles with each.
    errors: int = 0
    # The UTC day the quota count belongs to, as YYYY-MM-DD.
    quota_day: str | None = Field(default=None, max_length=10)
    quota_used: int = 0


class CarrierCredential(SQLModel, table=True):
    """A shop's own credentials for one carrier adapter.

    Some carriers show a shop only its own parcels, so their API needs the
    shop's credentials. ``adapter`` is the adapter name (``dhl``, ``ups``).
    """

    __tablename__ = "carrier_credential"
    __table_args__ = (
        UniqueConstraint("shop_id", "adapter", name="uq_carrier_credential"),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    shop_id: int = Field(foreign_key="shop.id", index=True)
    adapter: str = Field(max_length=32)
    # TODO(encrypt stored carrier secrets with a key outside the database)
    api_key: str = Field(default="", max_length=1000)
    client_id: str = Field(default="", max_length=500)
    client_secret: str = Field(default="", max_length=1000)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class OptOut(SQLModel, table=True):
    """An address that gets no more customer updates from one shop."""

    __tablename__ = "opt_out"
    __table_args__ = (
        UniqueConstraint("shop_id", "address", name="uq_opt_out"),
        _AUTOINCREMENT,
    )

    id: int | None = Field(default=None, primary_key=True)
    shop_id: int = Field(foreign_key="shop.id", index=True)
    # Lower case, so that one mailbox is one row.
    address: str = Field(max_length=320)
    # "mailto", "url" (the one-click link) or "admin".
    source: str = Field(max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class StatusFile(SQLModel, table=True):
    """A carrier status file that was imported, once per content."""

    __tablename__ = "status_file"

    __table_args__ = (_AUTOINCREMENT,)

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=500)
    rows: int = 0
    applied: int = 0
    unmatched: int = 0
    errors: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    imported_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
