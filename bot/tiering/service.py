"""Re-tier from settings: the configured dimensions, the app's zone, the push hand-off.

Runs that write take the `retier` lease first, so a full run and a touched re-tier never
diff against the same assignments at once (each move would be recorded twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from bot import leases
from bot.errors import TagbotError
from bot.runtime import Runtime
from bot.tiering.engine import MetricsEngine
from bot.tiering.handoff import Handoff, hand_off
from bot.tiering.rules import load_dimensions
from bot.tiering.run import ProgressFn, RetierReport, retier

LEASE = "retier"
LEASE_TTL = 3600.0  # longer than any run; a holder that died frees it after this


class RetierBusyError(TagbotError):
    """Another re-tier holds the lease."""


@contextmanager
def exclusive(rt: Runtime, *, wait: float) -> Iterator[bool]:
    """Hold the re-tier lease for the block; yield False when not got within `wait` s."""
    with leases.holding(rt.db, LEASE, leases.new_owner(), LEASE_TTL, wait=wait) as got:
        yield bool(got)


def retier_configured(
    rt: Runtime,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    customer_ids: Iterable[int] | None = None,
    engine: MetricsEngine | None = None,
    on_progress: ProgressFn | None = None,
    wait: float = 120.0,
) -> tuple[RetierReport, Handoff | None]:
    """Run the configured dimensions; unless dry, hand the new tiers on (alerts, push).

    A writing run waits up to `wait` seconds for another run to finish, then raises
    RetierBusyError.
    """
    dims = load_dimensions(rt.settings.tiering.dimensions)
    ids = None if customer_ids is None else sorted({int(i) for i in customer_ids})

    def run() -> RetierReport:
        return retier(
            rt.db,
            dims,
            tz=rt.settings.app.timezone,
            as_of=as_of,
            dry_run=dry_run,
            customer_ids=ids,
            engine=engine,
            on_progress=on_progress,
        )

    if dry_run:
        return run(), None
    with exclusive(rt, wait=wait) as got:
        if not got:
            raise RetierBusyError("另一个分层任务正在运行，请稍后再试 / another re-tier is running")
        report = run()
    # A touched run diffs its own customers' relations only: nobody else's tiers moved.
    return report, hand_off(rt, customer_ids=ids)
