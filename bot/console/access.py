"""Console roles: 管理员 may change things, 只读 may only look; who is which comes from config."""

from __future__ import annotations

from typing import Literal

from bot.config import ConsoleSettings

Role = Literal["admin", "viewer"]
ADMIN: Role = "admin"
VIEWER: Role = "viewer"
TOKEN_ACTOR = "admin-token"  # noqa: S105 (a label: who signed in with the admin token)

ROLE_LABELS: dict[str, str] = {ADMIN: "管理员", VIEWER: "只读"}


def role_of(console: ConsoleSettings, userid: str) -> Role | None:
    """Return the role `[console]` gives a WeCom member, or None when it lists them nowhere."""
    folded = userid.lower()
    if folded in console.admins:
        return ADMIN
    if folded in console.viewers:
        return VIEWER
    return None


def as_role(value: str) -> Role:
    """Read a stored role; anything unknown counts as the weaker one."""
    return ADMIN if value == ADMIN else VIEWER
