"""The states of every queue and run, one enum per kind of row (the `status` columns).

StrEnum members are the very strings the database stores, the metrics label and JSON
writes, so rows, queries and dashboards read the same text as before: no migration.
"""

from __future__ import annotations

from enum import StrEnum


class QueueStatus(StrEnum):
    """What every durable queue (bot.queue) shares: waiting, or given up on."""

    PENDING = "pending"
    DEAD = "dead"


class InboxStatus(StrEnum):
    """A callback event in the inbox (inbox_events)."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    IGNORED = "ignored"
    DEAD = "dead"


class OutboxStatus(StrEnum):
    """A WeCom write waiting in the outbox (outbox_operations)."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    DEAD = "dead"


class AlertStatus(StrEnum):
    """A message to a member (staff_alerts)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"


class TaskStatus(StrEnum):
    """A campaign task: one call to WeCom or a webhook (campaign_tasks)."""

    PENDING = "pending"
    CALLING = "calling"  # the request may have gone out
    CREATED = "created"  # WeCom has it (a msgid)
    SENT = "sent"
    FAILED = "failed"


class RunStatus(StrEnum):
    """A campaign run (campaign_runs)."""

    PLANNED = "planned"
    HELD = "held"  # quiet hours: sent when they end
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    """One customer's delivery in a run (campaign_deliveries)."""

    PLANNED = "planned"
    QUEUED = "queued"  # in a task not yet created
    CREATED = "created"  # in a 群发 WeCom has, not yet confirmed
    SENT = "sent"
    NOT_FRIEND = "not_friend"
    OVER_QUOTA = "over_quota"
    UNCONFIRMED = "unconfirmed"
    FAILED = "failed"
    NOTIFIED = "notified"  # follow_up: the member was told
    DELIVERED = "delivered"  # webhook: the endpoint took it
    HOLDOUT = "holdout"  # never messaged
