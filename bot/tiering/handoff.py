"""The one place a re-tier hands its assignments to the tier push (tags in WeCom).

The push now lives in bot/tags (`bot.tags.push.enqueue_tier_push`: ensure the tier tags,
diff desired against actual relation tags, queue one mark_tag per changed relation; run by
`tagbot push --tiers`). It calls WeCom, so this hand-off does not call it yet: the re-tier
records the tiers and the operator (or the next `tagbot push --tiers`) queues them. To
push from every run, make the body `enqueue_tier_push(rt)` and return its `diff.changed`.
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
    del rt  # not wired yet: see the module docstring
    return Handoff(queued=None)
