"""The list of /control/ endpoints: served at GET /control/ and shown by `--help`.

A test checks that it names exactly the routes control.py registers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON_HEADER = "-H 'Content-Type: application/json'"


@dataclass(frozen=True)
class Endpoint:
    """One control route: method, path, what the body or query holds, what it does."""

    method: str  # GET, POST, or "GET|PUT"
    path: str  # under /control
    params: str  # JSON body fields (? optional) or query parameters; "" for none
    does: str
    example: dict[str, Any] | None = None  # a body (POST/PUT) or query (GET) that works

    def curl(self, base: str) -> str:
        """Return a curl command for this endpoint on the simulator at `base`.

        With `example` it works as is; else its required fields hold <placeholders>.
        """
        url = f"{base}/control{self.path}"
        method = self.method.split("|")[-1]
        values = self.example if self.example is not None else self.placeholders()
        if method == "GET":
            if values:
                url = f"{url}?{'&'.join(f'{k}={v}' for k, v in values.items())}"
            return f"curl -s '{url}'"
        body = json.dumps(values, ensure_ascii=False)
        return f"curl -s -X {method} {url} {JSON_HEADER} -d '{body}'"

    def placeholders(self) -> dict[str, Any]:
        """The required fields of `params` (those without ?), each as <name>."""
        fields = [f.strip() for f in self.params.strip("{}").split(",")]
        return {f: f"<{f}>" for f in fields if f and "?" not in f}


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/", "", "this list", {}),
    Endpoint(
        "POST",
        "/staff",
        "{userid, name?, active?}",
        "add (or update) a member with 客户联系; `tagbot sync` then learns them",
        {"userid": "wangwu", "name": "王五"},
    ),
    Endpoint(
        "POST",
        "/scan",
        "{state, external_userid?, name?, unionid?, deliver?, duplicate?, chatted?}",
        "a customer scans the live code with this state; the add event goes to callback_url",
        {"state": "gzh01", "external_userid": "wm_demo_0002", "name": "李小红"},
    ),
    Endpoint(
        "POST",
        "/seed",
        "{staff, customers_per_staff, tag_groups?, prefix?}",
        "bulk-create members {prefix}_u0000…, their customers and console tags (no events)",
        {"staff": 2, "customers_per_staff": 10},
    ),
    Endpoint(
        "POST",
        "/relations",
        "{userid, external_userid?, name?, unionid?, state?, tag_ids?, personal_tags?}",
        "add a friend silently (no event), as if added while the bot was down",
        {"userid": "zhangsan", "name": "赵六"},
    ),
    Endpoint(
        "POST",
        "/group_chats",
        "{owner, name?, members?, chat_id?, notice?, deliver?, duplicate?}",
        "a member creates a customer group with these members (staff or customers); "
        "change_external_chat/create is posted -> {chat_id, members, xml, deliveries}",
        {"owner": "zhangsan", "name": "VIP会员群", "members": ["wm_demo_0001"]},
    ),
    Endpoint(
        "POST",
        "/group_chats/join",
        "{state, external_userid?, name?, unionid?, deliver?, duplicate?}",
        "a customer scans the QR of the join way with this state: update/add_member with "
        "JoinScene 3; groupchat/get then names the member's state (a full group: the next, "
        "or a new one when auto_create_room)",
    ),
    Endpoint(
        "POST",
        "/group_chats/<chat_id>/invite",
        "{members, invitor, by_link?, deliver?, duplicate?}",
        "a member in the group invites people (join_scene 1, 2 by link): add_member, JoinScene 0",
    ),
    Endpoint(
        "POST",
        "/group_chats/<chat_id>/leave",
        "{member, removed?, deliver?, duplicate?}",
        "a member leaves (QuitScene 0) or is removed by the owner (1): del_member",
    ),
    Endpoint(
        "POST",
        "/group_chats/<chat_id>/rename",
        "{name, deliver?, duplicate?}",
        "rename the group: change_name",
    ),
    Endpoint(
        "POST",
        "/group_chats/<chat_id>/notice",
        "{notice, deliver?, duplicate?}",
        "change the group's notice: change_notice",
    ),
    Endpoint(
        "POST",
        "/group_chats/<chat_id>/owner",
        "{userid, deliver?, duplicate?}",
        "hand the group to another member in it: change_owner",
    ),
    Endpoint(
        "POST",
        "/group_chats/<chat_id>/dismiss",
        "{deliver?, duplicate?}",
        "the owner dismisses the group: change_external_chat/dismiss",
    ),
    Endpoint(
        "POST",
        "/rule_tags",
        "{group_name, tag_name}",
        "a rule-group tag (type 3) -> {tag_id}",
        {"group_name": "规则", "tag_name": "活跃"},
    ),
    Endpoint(
        "POST",
        "/login_code",
        "{userid}",
        "a web-login code for this member, as if they had scanned the login QR -> {code}",
        {"userid": "zhangsan"},
    ),
    Endpoint(
        "GET|PUT",
        "/oauth_member",
        "{userid?, outsider?}",
        "who the WeCom client opens app pages as: OAuth2 authorize redirects at once with "
        "their code (null: the authorize page lists the members to pick)",
        {"userid": "zhangsan"},
    ),
    Endpoint(
        "POST",
        "/group_msgs/confirm",
        "{userid?}",
        "every 群发 waiting for this member (or for anyone) is confirmed -> {confirmed}",
        {},
    ),
    Endpoint(
        "POST",
        "/group_msgs/<msgid>/confirm",
        "{userid}",
        "one member confirms one 群发 -> {statuses: {external_userid: 1 sent|2|3}}",
    ),
    Endpoint(
        "POST",
        "/customer_deletes_staff",
        "{external_userid, userid}",
        "the customer deletes the member (an event follows)",
    ),
    Endpoint(
        "POST",
        "/staff_deletes_customer",
        "{external_userid, userid}",
        "the member deletes the customer (an event follows)",
    ),
    Endpoint(
        "POST",
        "/staff_edit_tags",
        "{userid, external_userid, add?, remove?}",
        "the member edits the customer's tags in the client (an event follows)",
    ),
    Endpoint(
        "POST",
        "/admin/create_tag",
        "{group_name, tag_name}",
        "the admin adds a tag -> {tag_id}",
        {"group_name": "会员", "tag_name": "金卡"},
    ),
    Endpoint("POST", "/admin/rename_tag", "{tag_id, new_name}", "rename a tag (or group)"),
    Endpoint("POST", "/admin/delete_tag", "{tag_id}", "the admin deletes a tag"),
    Endpoint("POST", "/admin/delete_group", "{group_id}", "the admin deletes a tag group"),
    Endpoint("POST", "/rate_limit", "{api_path?, per_minute?, per_hour?}", "limits before 45009"),
    Endpoint("GET|PUT", "/rate_limit", "{per_minute?, per_hour?}", "limits for every API path"),
    Endpoint(
        "POST",
        "/settings",
        "{unionid_bound?, groupmsg_task_delay?}",
        "simulator settings -> the settings now",
        {},
    ),
    Endpoint(
        "POST",
        "/faults",
        "{api_path, errcode?=-1, count?=1}",
        "the next calls of an API fail with errcode",
        {"api_path": "externalcontact/mark_tag", "errcode": 45009, "count": 1},
    ),
    Endpoint(
        "POST",
        "/error_rates",
        "{api_path, rate, errcode?=-1, seed?=0}",
        "a seeded share (0..1) of an API's calls fail with errcode; rate 0 stops it",
        {"api_path": "externalcontact/mark_tag", "rate": 0.1, "errcode": -1, "seed": 7},
    ),
    Endpoint(
        "POST",
        "/fault_windows",
        "{api_path, seconds, errcode?=45009}",
        "every call of an API fails with errcode for the next seconds",
        {"api_path": "externalcontact/mark_tag", "seconds": 5, "errcode": 45009},
    ),
    Endpoint("POST", "/stalls", "{api_path, seconds, count?=1}", "the next calls stall"),
    Endpoint("POST", "/expire_tokens", "", "every access_token expires", {}),
    Endpoint("POST", "/reset_counters", "", "zero the call counters", {}),
    Endpoint(
        "POST", "/advance_time", "{seconds}", "move the simulator's clock forward", {"seconds": 60}
    ),
    Endpoint(
        "GET|PUT",
        "/callback_url",
        "{url}",
        "where events are posted: the bot's /wecom/callback",
        {"url": "http://127.0.0.1:8000/wecom/callback"},
    ),
    Endpoint("POST", "/verify_callback_url", "{echo?}", "WeCom's GET verification of the URL"),
    Endpoint("POST", "/callbacks", "{xml, times?}", "post any plaintext event, encrypted"),
    Endpoint("GET", "/calls", "", "API calls by path and by errcode", {}),
    Endpoint("GET", "/welcomes", "", "welcome messages sent", {}),
    Endpoint("GET", "/app_messages", "", "app messages to staff, and those dropped", {}),
    Endpoint("GET", "/contact_ways", "", "the live codes", {}),
    Endpoint("GET", "/group_chats", "", "customer groups with their members, dismissed too", {}),
    Endpoint("GET", "/join_ways", "", "the 加入群聊 join ways", {}),
    Endpoint("GET", "/group_msgs", "", "群发 tasks with each member's and customer's status", {}),
    Endpoint("GET", "/deliveries", "", "callbacks posted to the bot and its answers", {}),
    Endpoint("GET", "/tags", "", "the corp tag catalogue", {}),
    Endpoint(
        "GET",
        "/relation_tags",
        "?userid=&external_userid=",
        "the tags a member has put on a customer",
        {"userid": "zhangsan", "external_userid": "wm_demo_0001"},
    ),
    Endpoint(
        "POST",
        "/open_chat",
        "{userid, external_userid?, entry?}",
        "open the sidebar page in this chat: what the JS-SDK stand-in's getContext "
        "(entry, default single_chat_tools) and getCurExternalContact answer",
        {"userid": "zhangsan", "external_userid": "wm_demo_0001", "entry": "single_chat_tools"},
    ),
    Endpoint(
        "POST",
        "/outside_wecom",
        "",
        "open the page in a plain browser: every call of the stand-in's ww fails",
        {},
    ),
    Endpoint(
        "POST",
        "/ticket_limits",
        "{per_hour_corp?, per_hour_app?}",
        "JS-SDK ticket fetches allowed an hour, per kind (400 per corp, 100 per app)",
        {"per_hour_app": 100},
    ),
    Endpoint("GET", "/jssdk", "", "the stand-in's calls and answers, tickets handed out", {}),
)


def index(base: str) -> list[dict[str, str]]:
    """Return the endpoints as JSON-ready rows, each with a curl command.

    `example` works as is on a simulator holding the example staff and live code gzh01;
    `template` has <placeholders> to fill in.
    """
    rows = []
    for e in ENDPOINTS:
        row = {"method": e.method, "path": f"/control{e.path}", "params": e.params, "does": e.does}
        row["example" if e.example is not None else "template"] = e.curl(base)
        rows.append(row)
    return rows


def help_lines() -> str:
    """Return the endpoint list for `tagbot simulator --help` (a click \\b block)."""
    width = max(len(e.method) + len(e.path) for e in ENDPOINTS) + 10
    lines = ["\b", "Control API (JSON; GET /control/ lists these with curl examples):"]
    for e in ENDPOINTS:
        head = f"{e.method} /control{e.path}"
        lines.append(f"  {head.ljust(width)} {e.params}".rstrip())
        lines.append(f"  {'':{width}}   {e.does}")
    return "\n".join(lines)
