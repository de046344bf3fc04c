"""Re-tier from settings: the configured dimensions, the app's zone, the push hand-off."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bot.runtime import Runtime
from bot.tiering.engine import MetricsEngine
from bot.tiering.handoff import Handoff, queue_tier_push
from bot.tiering.rules import load_dimensions
from bot.tiering.run import ProgressFn, RetierReport, retier


def retier_configured(
    rt: Runtime,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    customer_ids: Iterable[int] | None = None,
    engine: MetricsEngine | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[RetierReport, Handoff | None]:
    """Run the configured dimensions; unless dry, hand the new tiers to the push."""
    dims = load_dimensions(rt.settings.tiering.dimensions)
    report = retier(
        rt.db,
        dims,
        tz=rt.settings.app.timezone,
        as_of=as_of,
        dry_run=dry_run,
        customer_ids=customer_ids,
        engine=engine,
        on_progress=on_progress,
    )
    if dry_run:
        return report, None
    return report, queue_tier_push(rt)
