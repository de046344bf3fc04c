"""A Runtime's parts as the keyword arguments the bot's orchestrators take."""

from __future__ import annotations

import threading
from typing import TypedDict

from bot.config import Settings, TieringSettings
from bot.db import Database
from bot.runtime import Runtime
from bot.wecom.client import WeComClient


class OutreachParts(TypedDict):
    db: Database
    wecom: WeComClient
    settings: Settings
    stopping: threading.Event
    alerts_wakeup: threading.Event


class RetierParts(TypedDict):
    db: Database
    wecom: WeComClient
    settings: Settings
    outbox_wakeup: threading.Event
    alerts_wakeup: threading.Event


class TierPushParts(TypedDict):
    db: Database
    wecom: WeComClient
    tiering: TieringSettings
    outbox_wakeup: threading.Event


class DrainParts(TypedDict):
    db: Database
    wecom: WeComClient
    stopping: threading.Event


def outreach(rt: Runtime) -> OutreachParts:
    """Return what run_campaign, dispatch_run, perform_due and release_held take."""
    return OutreachParts(
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        stopping=rt.stopping,
        alerts_wakeup=rt.wakeups.alerts,
    )


def retier(rt: Runtime) -> RetierParts:
    """Return what retier_configured and hand_off take."""
    return RetierParts(
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        outbox_wakeup=rt.wakeups.outbox,
        alerts_wakeup=rt.wakeups.alerts,
    )


def tier_push(rt: Runtime) -> TierPushParts:
    """Return what enqueue_tier_push takes."""
    return TierPushParts(
        db=rt.db, wecom=rt.wecom, tiering=rt.settings.tiering, outbox_wakeup=rt.wakeups.outbox
    )


def drain(rt: Runtime) -> DrainParts:
    """Return what drain_all takes."""
    return DrainParts(db=rt.db, wecom=rt.wecom, stopping=rt.stopping)


class PlanningParts(TypedDict):
    db: Database
    settings: Settings


def planning(rt: Runtime) -> PlanningParts:
    """Return what plan_run takes besides the campaign."""
    return PlanningParts(db=rt.db, settings=rt.settings)
