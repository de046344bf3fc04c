"""Staff as operators see them: WeCom's userid and name beside the configured display name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Staff


@dataclass(frozen=True)
class StaffEntry:
    """One member: what WeCom told us and what `{staff}` renders as."""

    userid: str
    wecom_name: str
    display_name: str
    active: bool
    synced: bool  # False: named in `[staff]` but no sync has seen this userid

    @property
    def shown(self) -> str:
        """Return `{staff}`: the display name, else WeCom's name, else the userid."""
        return self.display_name or self.wecom_name or self.userid


def shown_name(userid: str, wecom_name: str | None, display_names: Mapping[str, str]) -> str:
    """Return how operators see a member: `[staff]` display name, else WeCom's, else userid."""
    return display_names.get(userid.lower()) or wecom_name or userid


def staff_entries(*, session: Session, display_names: Mapping[str, str]) -> list[StaffEntry]:
    """List synced staff by userid, then configured names no sync has seen."""
    rows = session.execute(select(Staff.userid, Staff.name, Staff.active).order_by(Staff.userid))
    entries = [
        StaffEntry(userid, name or "", display_names.get(userid.lower(), ""), active, True)
        for userid, name, active in rows
    ]
    seen = {e.userid.lower() for e in entries}
    entries += [
        StaffEntry(userid, "", name, False, False)
        for userid, name in sorted(display_names.items())
        if userid not in seen
    ]
    return entries


def staff_name(userid: str, *, session: Session, display_names: Mapping[str, str]) -> str:
    """Return `{staff}` for one member: the display name, else WeCom's name, else the userid."""
    wecom_name = session.scalars(select(Staff.name).where(Staff.userid == userid)).first()
    return shown_name(userid, wecom_name, display_names)
