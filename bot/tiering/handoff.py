"""The one place a re-tier hands its assignments to the tier push (tags in WeCom).

Branch `tierpush` builds the push in bot/tags (`bot.tags.push.enqueue_tier_push`: ensure
the tier tags, diff desired against actual relation tags, queue one mark_tag per changed
relation). Until it is merged this hand-off queues nothing and says so; merging it means
replacing the body of `queue_tier_push` with that call.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.runtime import Runtime


@dataclass(frozen=True)
class Handoff:
    """What the hand-off queued: None when there is no tier push yet in this build."""

    queued: int | None  # changed relations queued (one mark_tag each)


def queue_tier_push(rt: Runtime) -> Handoff:
    """Queue the tier tags of the current assignments for WeCom (the push's diff)."""
    del rt  # the push lands with branch `tierpush`
    return Handoff(queued=None)
