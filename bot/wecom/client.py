"""The one WeCom API client: timeout, shared token, rate limit, retries and metrics.

Every method returns typed dataclasses from `bot.wecom.types` and raises only
`bot.errors.WeComError`; nothing outside this package sees wechatpy or raw JSON.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError
from wechatpy.exceptions import WeChatClientException

from bot import wecom_limits as limits
from bot.config import LimitsSettings, WeComSettings
from bot.db import Database
from bot.db.types import utcnow, wall
from bot.errors import WeComError
from bot.wecom import metrics
from bot.wecom.budget import SharedBudget
from bot.wecom.tokens import TokenStore, token_key
from bot.wecom.transport import WeChatTransport
from bot.wecom.types import (
    AppMessageResult,
    ContactFollow,
    ContactWay,
    ExternalContact,
    GroupChat,
    GroupChatRef,
    GroupMsg,
    GroupMsgSendResult,
    GroupMsgTask,
    JoinWay,
    JoinWaySpec,
    JsapiTicket,
    TagGroupInfo,
    WebIdentity,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]

NETWORK_ERROR = -2
# Transient by WeCom's error list (wecom-api.md §4): retried here with backoff.
BACKOFF_CODES = frozenset({-1, 6000, 45033, NETWORK_ERROR})
TOKEN_CODES = frozenset({40014, 42001})
RATE_LIMITED = 45009
# Worth trying again later, but not in a tight loop here.
LATER_CODES = frozenset({41063, 41096})
_MAX_PAGES = 10_000  # a cursor that never ends is a WeCom bug; don't loop forever

CONTACT_WAY_FIELDS = frozenset(
    {
        "style",
        "remark",
        "skip_verify",
        "state",
        "user",
        "party",
        "expires_in",
        "chat_expires_in",
        "unionid",
        "conclusions",
    }
)


def _never_sent(exc: requests.RequestException) -> bool:
    """Tell whether a network error happened before the request reached WeCom."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, NewConnectionError):
            return True
        stack.extend([cur.__cause__, cur.__context__, getattr(cur, "reason", None)])
        stack.extend(a for a in cur.args if isinstance(a, BaseException))
    return False


# Open tallies of this thread (or task): every HTTP call of an API adds one to each.
_TALLIES: ContextVar[tuple[dict[str, int], ...]] = ContextVar("wecom_call_tallies", default=())


@contextmanager
def counting_calls() -> Iterator[dict[str, int]]:
    """Count the WeCom API calls this thread makes meanwhile, per API path (retries too)."""
    tally: dict[str, int] = {}
    token = _TALLIES.set((*_TALLIES.get(), tally))
    try:
        yield tally
    finally:
        _TALLIES.reset(token)


class WeComClient:
    """Call WeCom's server API for one self-built app, sharing its token through `db`."""

    def __init__(
        self,
        wecom: WeComSettings,
        limits: LimitsSettings,
        *,
        db: Database,
        pause_seconds: float = 60.0,
        max_pauses: int = 2,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        refresh_margin: float = 300.0,
        rate_window: float = 60.0,
        budget: SharedBudget | None = None,
        clock: Callable[[], float] = wall,  # the database's clock: budgets are shared
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = wecom
        self.agent_id = wecom.agent_id
        self._db = db
        self._max_retries = wecom.max_retries
        # WeCom blocks an API for the rest of its 60 s window after 45009 (doc 90312).
        self._pause_seconds = pause_seconds
        self._max_pauses = max_pauses
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        # Injectable so tests pass time instead of waiting for it. The clock is wall time:
        # every process on `db` books its calls in the same shared budget slots.
        self._clock = clock
        self._sleep = sleep
        self.budget = budget or SharedBudget(
            db,
            wecom.corp_id,
            per_minute=limits.calls_per_minute,
            per_hour=limits.calls_per_hour,
            interactive_reserve=limits.interactive_reserve,
            batch=limits.budget_batch,
            window=rate_window,
            clock=clock,
            sleep=sleep,
            stop=stop,  # a stopping process gives up waiting for budget at once
        )
        secret = wecom.secret.get_secret_value()
        self._wx = WeChatTransport(
            wecom.corp_id,
            secret,
            api_base=wecom.api_base,
            timeout=wecom.timeout_seconds,
            token_source=self._token,
            before_call=self._throttle,
        )
        self._tokens = TokenStore(
            db,
            token_key(wecom.corp_id, secret),
            self._fetch_token,
            refresh_margin=refresh_margin,
            lease_seconds=max(30.0, 2 * wecom.timeout_seconds + 5),
            now=wall_clock,
        )

    # --- machinery ------------------------------------------------------------------

    def _fetch_token(self) -> tuple[str, int]:
        result = self._wx.fetch_access_token()
        return str(result["access_token"]), int(result.get("expires_in") or 7200)

    def _token(self) -> str:
        return self._tokens.get()

    def _throttle(self, api: str) -> None:
        """Wait for a call of `api` in the corp's shared budget (and out any 45009 pause)."""
        self.budget.acquire(api)

    def _pause(self, api: str) -> None:
        self.budget.pause(api, self._pause_seconds)

    def _backoff(self, attempt: int) -> float:
        ceiling: float = min(self._backoff_cap, self._backoff_base * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # equal jitter

    def _once(self, api: str, send: Callable[[], Any], idempotent: bool) -> Json:
        """Make one HTTP call, record it and turn every failure into WeComError."""
        self._throttle(api)
        for tally in _TALLIES.get():
            tally[api] = tally.get(api, 0) + 1
        started = time.monotonic()
        try:
            result = send()
        except WeComError as exc:  # from the token fetch inside wechatpy's request
            if exc.api == "gettoken":
                raise
            metrics.record(api, exc.errcode, time.monotonic() - started)
            raise
        except WeChatClientException as exc:
            elapsed = time.monotonic() - started
            if exc.errcode is None:  # an HTTP error status
                status = getattr(exc.response, "status_code", 0) or 0
                metrics.record(api, NETWORK_ERROR, elapsed)
                if status >= 500 and not idempotent:
                    # A gateway's 502/504 can come after WeCom applied the request: a blind
                    # retry could create a second 群发 or live code.
                    raise WeComError(
                        NETWORK_ERROR,
                        f"HTTP {status} after sending; the call may have taken effect",
                        api=api,
                        retryable=False,
                    ) from None
                retryable = status >= 500 or status == 429
                raise WeComError(
                    NETWORK_ERROR, f"HTTP {status}", api=api, retryable=retryable
                ) from None
            errcode = int(exc.errcode)
            metrics.record(api, errcode, elapsed)
            retryable = errcode in BACKOFF_CODES | TOKEN_CODES | LATER_CODES | {RATE_LIMITED}
            raise WeComError(errcode, str(exc.errmsg), api=api, retryable=retryable) from None
        except requests.RequestException as exc:
            metrics.record(api, NETWORK_ERROR, time.monotonic() - started)
            if idempotent or _never_sent(exc):
                raise WeComError(
                    NETWORK_ERROR, type(exc).__name__, api=api, retryable=True
                ) from None
            # The request may have been applied: a blind retry could duplicate it.
            raise WeComError(
                NETWORK_ERROR,
                f"{type(exc).__name__} after sending; the call may have taken effect",
                api=api,
                retryable=False,
            ) from None
        if not isinstance(result, dict):  # wechatpy hands back the response it couldn't decode
            metrics.record(api, NETWORK_ERROR, time.monotonic() - started)
            raise WeComError(NETWORK_ERROR, "response is not JSON", api=api, retryable=True)
        metrics.record(api, 0, time.monotonic() - started)
        return result

    def _call(
        self,
        api: str,
        send: Callable[[], Any],
        *,
        idempotent: bool = True,
        pause_on_limit: bool = True,
    ) -> Json:
        """Run one API call with the token, 45009 and backoff retry policies.

        `pause_on_limit=False` raises a 45009 at once instead of pausing the API: for
        limits counted per hour, where waiting out a minute window would not help.
        """
        if self._db.writing:
            # It would hold every other writer (the callback acks) for as long as WeCom
            # takes, and a token refresh would wait for this very transaction.
            raise RuntimeError(f"{api}: WeCom called inside a write transaction")
        attempt = pauses = 0
        token_retried = False
        stale: str | None = None  # a token WeCom rejected, to replace before the retry
        while True:
            try:
                if stale is not None:
                    self._tokens.invalidate(stale)  # its failures go through the policy too
                    stale = None
                return self._once(api, send, idempotent)
            except WeComError as err:
                if err.errcode in TOKEN_CODES and not token_retried:
                    token_retried = True
                    log.info("%s: token rejected (%s), refetching", api, err.errcode)
                    stale = self._wx.last_token
                    continue
                if err.errcode == RATE_LIMITED and pause_on_limit and pauses < self._max_pauses:
                    pauses += 1
                    log.warning("%s: rate limited; pausing %.1fs", api, self._pause_seconds)
                    self._pause(err.api or api)
                    continue
                if err.retryable and err.errcode in BACKOFF_CODES and attempt < self._max_retries:
                    delay = self._backoff(attempt)
                    attempt += 1
                    log.info("%s: %s; retry %d in %.2fs", api, err, attempt, delay)
                    self._sleep(delay)
                    continue
                raise

    def _get(self, api: str, params: Mapping[str, Any] | None = None) -> Json:
        return self._call(api, lambda: self._wx.get(api, params=dict(params or {})))

    def _post(self, api: str, data: Mapping[str, Any], *, idempotent: bool = True) -> Json:
        return self._call(api, lambda: self._wx.post(api, data=dict(data)), idempotent=idempotent)

    def _pages(
        self, api: str, data: Mapping[str, Any], *, cursor_key: str = "cursor"
    ) -> Iterator[Json]:
        """POST `api` repeatedly, following `next_cursor` until it is empty."""
        cursor = ""
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = self._post(api, {**data, cursor_key: cursor})
            yield page
            cursor = str(page.get("next_cursor") or "")
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    def close(self) -> None:
        """Close pooled HTTP connections."""
        self._wx._http.close()

    # --- token ------------------------------------------------------------------------

    def get_access_token(self) -> str:
        """Return the shared access token, fetching it if needed.

        https://developer.work.weixin.qq.com/document/path/91039
        """
        try:
            return self._tokens.get()
        except WeComError as err:
            if err.errcode == RATE_LIMITED:
                self._pause("gettoken")
            raise

    # --- web identity -----------------------------------------------------------------

    def get_user_info(self, code: str) -> WebIdentity:
        """Exchange a web login or OAuth code for the member's userid (single use, 5 minutes).

        Answers 40029 for a reused, expired or foreign code (wecom-api.md section 7.3).
        https://developer.work.weixin.qq.com/document/path/91023
        """
        api = "auth/getuserinfo"
        return WebIdentity.parse(self._get(api, {"code": code}), api=api)

    # --- JS-SDK tickets ---------------------------------------------------------------

    def get_jsapi_ticket(self) -> JsapiTicket:
        """Fetch the corp's jsapi_ticket (signs `getConfigSignature`, corp identity).

        WeCom allows 400 fetches an hour per corp and 100 per app, answering 45009 beyond:
        raised at once, never paused on (bot.sidebar.tickets caches and shares tickets).
        https://developer.work.weixin.qq.com/document/path/90506
        """
        api = "get_jsapi_ticket"
        return JsapiTicket.parse(self._get_once_an_hour(api, {}), api=api)

    def get_agent_ticket(self) -> JsapiTicket:
        """Fetch this app's jsapi_ticket (signs `getAgentConfigSignature`, app identity).

        Same limits as get_jsapi_ticket; fetched with this app's own access token.
        https://developer.work.weixin.qq.com/document/path/90506
        """
        api = "ticket/get"
        page = self._get_once_an_hour(api, {"type": "agent_config"})
        return JsapiTicket.parse(page, api=api)

    def _get_once_an_hour(self, api: str, params: Mapping[str, Any]) -> Json:
        return self._call(api, lambda: self._wx.get(api, params=dict(params)), pause_on_limit=False)

    # --- customers --------------------------------------------------------------------

    def get_external_contact(self, external_userid: str) -> ExternalContact:
        """Fetch a customer with every follower and their tags, paging past 500.

        https://developer.work.weixin.qq.com/document/path/92114
        """
        api = "externalcontact/get"
        follow: list[Any] = []
        profile: Json = {}
        cursor = ""
        for _ in range(_MAX_PAGES):
            params = {"external_userid": external_userid}
            if cursor:
                params["cursor"] = cursor
            page = self._get(api, params)
            profile = page.get("external_contact") or profile
            follow.extend(page.get("follow_user") or ())
            nxt = str(page.get("next_cursor") or "")
            if not nxt or nxt == cursor:
                break
            cursor = nxt
        # One validation of the whole customer: the followers of every page together.
        return ExternalContact.parse({**profile, "follow_user": follow}, api=api)

    def batch_get_by_user(
        self, userids: Sequence[str], cursor: str = "", limit: int = limits.BATCH_GET_PAGE_MAX
    ) -> tuple[list[ContactFollow], str]:
        """Fetch one page of customers of up to 100 members.

        https://developer.work.weixin.qq.com/document/path/92994
        """
        if not userids or len(userids) > limits.BATCH_GET_USERS_MAX:
            raise ValueError("batch_get_by_user takes 1 to 100 userids")
        api = "externalcontact/batch/get_by_user"
        page = self._post(
            api,
            {
                "userid_list": list(userids),
                "cursor": cursor,
                "limit": max(1, min(limit, limits.BATCH_GET_PAGE_MAX)),
            },
        )
        items = [ContactFollow.parse(d, api=api) for d in page.get("external_contact_list") or ()]
        return items, str(page.get("next_cursor") or "")

    def iter_batch_get_by_user(
        self, userids: Sequence[str], limit: int = limits.BATCH_GET_PAGE_MAX
    ) -> Iterator[ContactFollow]:
        """Yield every (customer, member) pair of any number of members, page by page."""
        ids = list(dict.fromkeys(userids))
        step = limits.BATCH_GET_USERS_MAX
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            cursor = ""
            seen: set[str] = set()
            while True:
                items, cursor = self.batch_get_by_user(chunk, cursor, limit)
                yield from items
                if not cursor or cursor in seen:
                    break
                seen.add(cursor)

    def get_follow_user_list(self) -> list[str]:
        """List members who have 客户联系 and are in the app's visible range.

        https://developer.work.weixin.qq.com/document/path/92571
        """
        api = "externalcontact/get_follow_user_list"
        page = self._call(api, self._wx.external_contact.get_follow_user_list)
        return [str(u) for u in page.get("follow_user") or ()]

    def list_external_contacts(self, userid: str) -> list[str]:
        """List a member's customers' external_userids; none is an empty list.

        https://developer.work.weixin.qq.com/document/path/92113
        """
        api = "externalcontact/list"
        try:
            page = self._call(api, lambda: self._wx.external_contact.list(userid))
        except WeComError as err:
            if err.errcode == 84061:  # "no external contact": the member simply has none
                return []
            raise
        return [str(u) for u in page.get("external_userid") or ()]

    def remark(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
        remark_pic_mediaid: str | None = None,
    ) -> None:
        """Set a member's remark on a customer, sending only the given fields.

        https://developer.work.weixin.qq.com/document/path/92115
        """
        data: Json = {"userid": userid, "external_userid": external_userid}
        optional = {
            "remark": remark,
            "description": description,
            "remark_company": remark_company,
            "remark_mobiles": None if remark_mobiles is None else list(remark_mobiles),
            "remark_pic_mediaid": remark_pic_mediaid,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        self._post("externalcontact/remark", data)

    # --- 联系我 (channel live codes) -------------------------------------------------

    def add_contact_way(
        self,
        *,
        type: int,
        scene: int = 2,
        user: Sequence[str] = (),
        party: Sequence[int] = (),
        style: int | None = None,
        remark: str | None = None,
        skip_verify: bool = True,
        state: str | None = None,
        is_temp: bool | None = None,
        expires_in: int | None = None,
        chat_expires_in: int | None = None,
        unionid: str | None = None,
        is_exclusive: bool | None = None,
        conclusions: Mapping[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Create a 联系我 config and return (config_id, qr_code).

        https://developer.work.weixin.qq.com/document/path/92228
        """
        data: Json = {"type": type, "scene": scene, "skip_verify": skip_verify}
        optional: Json = {
            "user": list(user) or None,
            "party": list(party) or None,
            "style": style,
            "remark": remark,
            "state": state,
            "is_temp": is_temp,
            "expires_in": expires_in,
            "chat_expires_in": chat_expires_in,
            "unionid": unionid,
            "is_exclusive": is_exclusive,
            "conclusions": None if conclusions is None else dict(conclusions),
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        # Not idempotent: a blind retry after a lost response would create a second code.
        page = self._post("externalcontact/add_contact_way", data, idempotent=False)
        return str(page.get("config_id") or ""), str(page.get("qr_code") or "")

    def get_contact_way(self, config_id: str) -> ContactWay:
        """Fetch one 联系我 config.

        https://developer.work.weixin.qq.com/document/path/92228
        """
        api = "externalcontact/get_contact_way"
        page = self._call(api, lambda: self._wx.external_contact.get_contact_way(config_id))
        return ContactWay.parse(page.get("contact_way") or {}, api=api)

    def update_contact_way(self, config_id: str, **changes: Any) -> None:
        """Change only the given fields of a 联系我 config; lists given overwrite.

        https://developer.work.weixin.qq.com/document/path/92228
        """
        unknown = set(changes) - CONTACT_WAY_FIELDS
        if unknown:
            raise ValueError(f"update_contact_way: unknown fields {sorted(unknown)}")
        # wechatpy's helper always sends skip_verify=True; we send exactly what is asked.
        data: Json = {"config_id": config_id}
        for key, value in changes.items():
            if value is None:
                continue
            data[key] = list(value) if isinstance(value, tuple) else value
        self._post("externalcontact/update_contact_way", data)

    def del_contact_way(self, config_id: str) -> None:
        """Delete a 联系我 config.

        https://developer.work.weixin.qq.com/document/path/92228
        """
        api = "externalcontact/del_contact_way"
        self._call(api, lambda: self._wx.external_contact.del_contact_way(config_id))

    def list_contact_way(
        self,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = limits.CONTACT_WAY_LIST_PAGE_MAX,
    ) -> list[str]:
        """List the config_ids of API-created 联系我 configs, all pages.

        https://developer.work.weixin.qq.com/document/path/92228
        """
        data: Json = {"limit": max(1, min(limit, limits.CONTACT_WAY_LIST_PAGE_MAX))}
        if start_time is not None:
            data["start_time"] = start_time
        if end_time is not None:
            data["end_time"] = end_time
        return [
            str(c.get("config_id"))
            for page in self._pages("externalcontact/list_contact_way", data)
            for c in page.get("contact_way") or ()
        ]

    # --- customer groups (客户群) and their 加入群聊 join ways: docs/wecom-groups.md -------

    def list_group_chats(
        self,
        owners: Sequence[str] | None = None,
        *,
        status_filter: int = 0,
        limit: int = limits.GROUPCHAT_LIST_PAGE_MAX,
    ) -> list[GroupChatRef]:
        """List the customer groups of these owners (100 a call), every page.

        Without owners WeCom lists the app's whole visible range and answers 81017 past
        1000 people. `status_filter`: 0 all, 1 owner left, 2 handover running, 3 handed over.
        https://developer.work.weixin.qq.com/document/path/92120
        """
        if status_filter not in (0, 1, 2, 3):
            raise ValueError("list_group_chats: status_filter is 0, 1, 2 or 3")
        base: Json = {
            "status_filter": status_filter,
            "limit": max(1, min(limit, limits.GROUPCHAT_LIST_PAGE_MAX)),
        }
        if owners is None:
            batches: list[Json] = [base]
        else:
            step = limits.GROUPCHAT_OWNERS_MAX
            unique = list(dict.fromkeys(owners))
            batches = [
                {**base, "owner_filter": {"userid_list": unique[i : i + step]}}
                for i in range(0, len(unique), step)
            ]
        api = "externalcontact/groupchat/list"
        return [
            GroupChatRef.parse(g, api=api)
            for data in batches
            for page in self._pages(api, data)
            for g in page.get("group_chat_list") or ()
        ]

    def get_group_chat(self, chat_id: str, *, need_name: bool = False) -> GroupChat:
        """Fetch one customer group: owner, members with join time, scene and state, admins.

        https://developer.work.weixin.qq.com/document/path/92122
        """
        api = "externalcontact/groupchat/get"
        page = self._post(api, {"chat_id": chat_id, "need_name": int(need_name)})
        return GroupChat.parse(page.get("group_chat") or {}, api=api)

    def add_join_way(self, spec: JoinWaySpec) -> str:
        """Create a 加入群聊 join way; return its config_id.

        The QR code comes from `get_join_way` (add answers the config_id only).
        https://developer.work.weixin.qq.com/document/path/92229
        """
        # Not idempotent: a blind retry after a lost response would create a second code.
        page = self._post("externalcontact/groupchat/add_join_way", spec.body(), idempotent=False)
        return str(page.get("config_id") or "")

    def get_join_way(self, config_id: str) -> JoinWay:
        """Fetch one join way, with its QR code for scene 2.

        https://developer.work.weixin.qq.com/document/path/92229
        """
        api = "externalcontact/groupchat/get_join_way"
        page = self._post(api, {"config_id": config_id})
        return JoinWay.parse(page.get("join_way") or {}, api=api)

    def update_join_way(self, config_id: str, spec: JoinWaySpec) -> None:
        """Replace a join way's whole configuration: WeCom's update overwrites every field.

        https://developer.work.weixin.qq.com/document/path/92229
        """
        data = {"config_id": config_id, **spec.body()}
        self._post("externalcontact/groupchat/update_join_way", data)

    def del_join_way(self, config_id: str) -> None:
        """Delete a join way.

        https://developer.work.weixin.qq.com/document/path/92229
        """
        self._post("externalcontact/groupchat/del_join_way", {"config_id": config_id})

    # --- corp tags --------------------------------------------------------------------

    def get_corp_tag_list(
        self, tag_ids: Sequence[str] | None = None, group_ids: Sequence[str] | None = None
    ) -> list[TagGroupInfo]:
        """Fetch the tag catalogue, or the given tags/groups; group_ids win.

        https://developer.work.weixin.qq.com/document/path/92117
        """
        data: Json = {}
        if tag_ids:
            data["tag_id"] = list(tag_ids)
        if group_ids:
            data["group_id"] = list(group_ids)
        api = "externalcontact/get_corp_tag_list"
        page = self._post(api, data)
        return [TagGroupInfo.parse(g, api=api) for g in page.get("tag_group") or ()]

    def add_corp_tag(
        self,
        tags: Sequence[str],
        *,
        group_name: str | None = None,
        group_id: str | None = None,
        group_order: int | None = None,
        orders: Sequence[int] | None = None,
    ) -> TagGroupInfo:
        """Add tags to a group by id or name, creating the group if needed.

        `orders`, one per tag, sets where each tag sorts (larger first).
        https://developer.work.weixin.qq.com/document/path/92117
        """
        if not tags or (group_name is None) == (group_id is None):
            raise ValueError("add_corp_tag needs tags and exactly one of group_name/group_id")
        if orders is not None and len(orders) != len(tags):
            raise ValueError("add_corp_tag needs one order per tag")
        data: Json = {"tag": [{"name": name} for name in tags]}
        if orders is not None:
            for tag, order in zip(data["tag"], orders, strict=True):
                tag["order"] = order
        if group_id is not None:
            data["group_id"] = group_id
        else:
            data["group_name"] = group_name
        if group_order is not None:
            data["order"] = group_order
        api = "externalcontact/add_corp_tag"
        page = self._post(api, data, idempotent=False)
        return TagGroupInfo.parse(page.get("tag_group") or {}, api=api)

    def edit_corp_tag(self, id: str, *, name: str | None = None, order: int | None = None) -> None:
        """Rename or reorder a tag or tag group.

        https://developer.work.weixin.qq.com/document/path/92117
        """
        data: Json = {"id": id}
        if name is not None:
            data["name"] = name
        if order is not None:
            data["order"] = order
        self._post("externalcontact/edit_corp_tag", data)

    def del_corp_tag(self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()) -> None:
        """Delete tags and/or whole groups.

        https://developer.work.weixin.qq.com/document/path/92117
        """
        if not tag_ids and not group_ids:
            raise ValueError("del_corp_tag needs tag_ids or group_ids")
        data: Json = {}
        if tag_ids:
            data["tag_id"] = list(tag_ids)
        if group_ids:
            data["group_id"] = list(group_ids)
        self._post("externalcontact/del_corp_tag", data)

    def mark_tag(
        self,
        userid: str,
        external_userid: str,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> None:
        """Add and remove corp tags on one relation in one call.

        https://developer.work.weixin.qq.com/document/path/92118
        """
        if not add and not remove:
            return  # WeCom refuses an empty call; skipping it saves quota too
        data: Json = {"userid": userid, "external_userid": external_userid}
        if add:
            data["add_tag"] = list(add)
        if remove:
            data["remove_tag"] = list(remove)
        self._post("externalcontact/mark_tag", data)

    # --- messages ---------------------------------------------------------------------

    def send_welcome_msg(
        self, welcome_code: str, text: str = "", attachments: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Send the welcome message for a fresh add (code lives 20 s, works once).

        https://developer.work.weixin.qq.com/document/path/92599
        """
        data: Json = {"welcome_code": welcome_code}
        if text:
            data["text"] = {"content": text}
        if attachments:
            data["attachments"] = [dict(a) for a in attachments]
        # Safe to retry: a code works once, so a duplicate answers 41051 instead of resending.
        self._post("externalcontact/send_welcome_msg", data)

    def add_msg_template(
        self,
        *,
        sender: str | None = None,
        external_userids: Sequence[str] = (),
        text: str = "",
        attachments: Sequence[Mapping[str, Any]] = (),
        chat_type: str = "single",
        chat_id_list: Sequence[str] = (),
        tag_filter: Mapping[str, Any] | None = None,
        allow_select: bool | None = None,
    ) -> tuple[str, list[str]]:
        """Create a 群发 task for a member to confirm; return (msgid, fail_list).

        https://developer.work.weixin.qq.com/document/path/92135
        """
        data: Json = {"chat_type": chat_type}
        if sender:
            data["sender"] = sender
        if external_userids:
            data["external_userid"] = list(external_userids)
        if chat_id_list:
            data["chat_id_list"] = list(chat_id_list)
        if tag_filter is not None:
            data["tag_filter"] = dict(tag_filter)
        if allow_select is not None:
            data["allow_select"] = allow_select
        if text:
            data["text"] = {"content": text}
        if attachments:
            data["attachments"] = [dict(a) for a in attachments]
        page = self._post("externalcontact/add_msg_template", data, idempotent=False)
        return str(page.get("msgid") or ""), [str(x) for x in page.get("fail_list") or ()]

    def get_groupmsg_list_v2(
        self,
        *,
        start_time: int,
        end_time: int,
        creator: str | None = None,
        chat_type: str = "single",
        filter_type: int = 2,
        limit: int = limits.GROUPMSG_LIST_PAGE_MAX,
    ) -> list[GroupMsg]:
        """List the 群发 messages created in [start_time, end_time] (epoch s), all pages.

        `filter_type` 0 corp-created, 1 member-created, 2 both; the range is at most a month.
        https://developer.work.weixin.qq.com/document/path/93338
        """
        if end_time < start_time:
            raise ValueError("get_groupmsg_list_v2: end_time before start_time")
        if end_time - start_time > limits.GROUPMSG_LIST_SPAN_SECONDS:
            raise ValueError("get_groupmsg_list_v2: WeCom lists at most one month at a time")
        if filter_type not in (0, 1, 2):
            raise ValueError("get_groupmsg_list_v2: filter_type is 0, 1 or 2")
        data: Json = {
            "chat_type": chat_type,
            "start_time": start_time,
            "end_time": end_time,
            "filter_type": filter_type,
            "limit": max(1, min(limit, limits.GROUPMSG_LIST_PAGE_MAX)),
        }
        if creator:
            data["creator"] = creator
        api = "externalcontact/get_groupmsg_list_v2"
        return [
            GroupMsg.parse(m, api=api)
            for page in self._pages(api, data)
            for m in page.get("group_msg_list") or ()
        ]

    def get_groupmsg_task(self, msgid: str) -> list[GroupMsgTask]:
        """List each member's confirmation of a 群发 message, all pages.

        https://developer.work.weixin.qq.com/document/path/93338
        """
        api = "externalcontact/get_groupmsg_task"
        data = {"msgid": msgid, "limit": limits.GROUPMSG_RESULT_PAGE_MAX}
        return [
            GroupMsgTask.parse(t, api=api)
            for page in self._pages(api, data)
            for t in page.get("task_list") or ()
        ]

    def get_groupmsg_send_result(self, msgid: str, userid: str) -> list[GroupMsgSendResult]:
        """List delivery per customer of one member's 群发 message, all pages.

        https://developer.work.weixin.qq.com/document/path/93338
        """
        api = "externalcontact/get_groupmsg_send_result"
        data = {"msgid": msgid, "userid": userid, "limit": limits.GROUPMSG_RESULT_PAGE_MAX}
        return [
            GroupMsgSendResult.parse(r, api=api)
            for page in self._pages(api, data)
            for r in page.get("send_list") or ()
        ]

    def send_app_message(
        self,
        touser: Sequence[str],
        *,
        text: str | None = None,
        textcard: Mapping[str, str] | None = None,
    ) -> AppMessageResult:
        """Send a text or textcard from our app to members.

        https://developer.work.weixin.qq.com/document/path/90236
        """
        if (text is None) == (textcard is None):
            raise ValueError("send_app_message needs exactly one of text or textcard")
        if not touser:
            raise ValueError("send_app_message needs at least one recipient")
        msg: Json = (
            {"msgtype": "text", "text": {"content": text}}
            if text is not None
            else {"msgtype": "textcard", "textcard": dict(textcard or {})}
        )
        api = "message/send"
        page = self._call(api, lambda: self._wx.message.send(self.agent_id, list(touser), msg=msg))
        return AppMessageResult.parse(page, api=api)

    def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch a file WeCom hosts (a live code's QR image) through this client's HTTP session.

        Not an API call (no token, no budget); the same proxy and CA settings apply.
        Raise WeComError(NETWORK_ERROR) when it cannot be fetched or exceeds `max_bytes`.
        """
        if not url.startswith(("https://", "http://")):
            raise WeComError(NETWORK_ERROR, "not an http(s) URL", api="download")
        try:
            answer = self._wx._http.get(url, timeout=self.settings.timeout_seconds, stream=True)
            try:
                answer.raise_for_status()
                body = answer.raw.read(max_bytes + 1, decode_content=True)
            finally:
                answer.close()
        except requests.RequestException as exc:
            raise WeComError(NETWORK_ERROR, type(exc).__name__, api="download") from None
        if len(body) > max_bytes:
            raise WeComError(NETWORK_ERROR, f"larger than {max_bytes} bytes", api="download")
        return bytes(body)
