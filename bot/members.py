"""The corp's members as rows (Staff): created on first sight by a sync, a callback or a channel.

A module of its own below both customers and channels: a channel names members before
any customer relation exists, and a relation needs its member's row.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import Staff


def get_or_create_staff(userid: str, *, session: Session, name: str | None = None) -> Staff:
    """Return the staff member with this userid, creating an active one if unknown."""
    staff = session.scalars(select(Staff).where(Staff.userid == userid)).one_or_none()
    if staff is None:
        staff = Staff(userid=userid, name=name or "", active=True)
        session.add(staff)
        session.flush()
    elif name is not None and staff.name != name:
        staff.name = name
    return staff
