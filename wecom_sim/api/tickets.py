"""JS-SDK tickets: get_jsapi_ticket and ticket/get?type=agent_config (doc 90506).

Each fetch hands out a new ticket valid `ticket_ttl` seconds (7200); earlier ones stay valid
until their own expiry, so a page signed just before a refresh still registers. Fetches are
limited per hour, for each kind of ticket, to 400 per corp and 100 per app; beyond that WeCom
answers 45009, its frequency-limit code (wecom-api.md section 4; the ticket page names the
limits but no separate code).
"""

from __future__ import annotations

from typing import Any

from wecom_sim.api.params import INVALID, Call
from wecom_sim.api.registry import HOUR_WINDOW, RATE_LIMITED, route
from wecom_sim.crypto import random_id
from wecom_sim.state import ApiError, JsTicket, RateWindow, SimState


def _within_limits(state: SimState, kind: str, agent_id: int) -> None:
    """Count one fetch in the corp's and the app's hourly windows, or refuse it."""
    now = state.now()
    scopes = (
        (("corp", kind), state.tickets_per_hour_corp),
        ((f"app:{agent_id}", kind), state.tickets_per_hour_app),
    )
    windows = []
    for key, limit in scopes:
        window = state.ticket_windows.get(key)
        if window is None or now - window.started >= HOUR_WINDOW:
            window = state.ticket_windows[key] = RateWindow(now)
        if window.count >= limit:
            raise ApiError(RATE_LIMITED, "api freq out of limit: jsapi ticket hourly limit")
        windows.append(window)
    for window in windows:
        window.count += 1


def _issue(state: SimState, kind: str, agent_id: int) -> dict[str, Any]:
    _within_limits(state, kind, agent_id)
    ticket = random_id("", 86)
    state.js_tickets[ticket] = JsTicket(kind, agent_id, state.now() + state.ticket_ttl)
    state.ticket_fetches[kind] += 1
    return {"ticket": ticket, "expires_in": state.ticket_ttl}


@route("get_jsapi_ticket", "GET")
def get_jsapi_ticket(state: SimState, call: Call) -> dict[str, Any]:
    """Hand out a corp jsapi_ticket (signs wx.config / getConfigSignature)."""
    return _issue(state, "corp", 0)


@route("ticket/get", "GET")
def get_ticket(state: SimState, call: Call) -> dict[str, Any]:
    """Hand out the app's ticket for type=agent_config (signs getAgentConfigSignature)."""
    if call.text("type", required=True) != "agent_config":
        raise ApiError(INVALID, "invalid parameter: type must be agent_config")
    return _issue(state, "agent", state.agent_id)
