"""Create channels through the service, as an operator would."""

from __future__ import annotations

from bot.channels import live_codes
from bot.runtime import Runtime
from bot.tags.catalogue import TagPath
from tests.support.live import LiveServer


def store_channel(
    server: LiveServer, name: str = "门店", tags: tuple[str, ...] = ("来源/门店",)
) -> str:
    """Create a channel for alice with these tags; return its state."""
    rt = server.runtime
    return live_codes.create(
        live_codes.ChannelSpec(
            name=name, staff=("alice",), tags=tuple(TagPath.parse(t) for t in tags)
        ),
        db=rt.db,
        wecom=rt.wecom,
    ).state


def welcome_channel(rt: Runtime) -> str:
    """Create the channel 活动 for alice, tag 来源/活动, welcome "hi"; return its state."""
    return live_codes.create(
        live_codes.ChannelSpec(
            name="活动", staff=("alice",), tags=(TagPath("来源", "活动"),), welcome="hi"
        ),
        db=rt.db,
        wecom=rt.wecom,
    ).state
