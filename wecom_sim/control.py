"""The /control/ JSON API: drive and inspect the simulator from outside the process."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from wecom_sim.control_index import index

if TYPE_CHECKING:
    from wecom_sim.server import Simulator


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{key} must be a list of strings")
    return value


def _delivery(body: dict[str, Any]) -> dict[str, bool]:
    """The deliver / duplicate switches every group action takes."""
    return {
        "deliver": bool(body.get("deliver", True)),
        "duplicate": bool(body.get("duplicate", False)),
    }


def control_blueprint(sim: Simulator) -> Blueprint:
    """Return the blueprint of /control/ routes bound to `sim`."""
    bp = Blueprint("control", __name__, url_prefix="/control")

    @bp.errorhandler(LookupError)
    def not_found(exc: LookupError) -> tuple[Response, int]:
        return jsonify(error=str(exc).strip("'\"")), 404

    @bp.errorhandler(KeyError)
    def missing_field(exc: KeyError) -> tuple[Response, int]:
        return jsonify(error=f"missing field {exc}"), 400

    @bp.errorhandler(ValueError)
    @bp.errorhandler(TypeError)
    def bad_request(exc: Exception) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 400

    @bp.get("/")
    def endpoints() -> Response:
        return jsonify(endpoints=index(request.host_url.rstrip("/")))

    @bp.post("/staff")
    def add_staff() -> Response:
        b = _body()
        sim.add_staff(b["userid"], b.get("name", ""), bool(b.get("active", True)))
        return jsonify(ok=True)

    @bp.post("/seed")
    def seed() -> Response:
        b = _body()
        sim.seed(
            int(b["staff"]),
            int(b["customers_per_staff"]),
            tag_groups=b.get("tag_groups"),
            prefix=b.get("prefix", "seed"),
        )
        return jsonify(ok=True)

    @bp.post("/login_code")
    def login_code() -> Response:
        return jsonify(code=sim.login_code(str(_body().get("userid") or "")))

    @bp.get("/oauth_member")
    def oauth_member() -> Response:
        picked = sim.oauth_member
        return jsonify(userid=picked, outsider=picked == "")

    @bp.put("/oauth_member")
    def set_oauth_member() -> Response:
        b = _body()
        userid = b.get("userid")
        if userid is not None and not isinstance(userid, str):
            raise TypeError("userid must be a string or null")
        sim.set_oauth_member(userid or None, outsider=bool(b.get("outsider")))
        return jsonify(ok=True)

    @bp.post("/scan")
    def scan() -> Response:
        b = _body()
        result = sim.scan(
            b["state"],
            external_userid=b.get("external_userid"),
            name=b.get("name"),
            unionid=b.get("unionid"),
            deliver=bool(b.get("deliver", True)),
            duplicate=bool(b.get("duplicate", False)),
            chatted=b.get("chatted"),
        )
        return jsonify(asdict(result))

    @bp.post("/group_chats")
    def create_group_chat() -> Response:
        b = _body()
        event = sim.create_group_chat(
            b["owner"],
            str(b.get("name") or ""),
            _strings(b, "members"),
            chat_id=b.get("chat_id"),
            notice=str(b.get("notice") or ""),
            **_delivery(b),
        )
        return jsonify(asdict(event))

    @bp.post("/group_chats/join")
    def join_group_by_qr() -> Response:
        b = _body()
        event = sim.join_group_by_qr(
            b["state"],
            external_userid=b.get("external_userid"),
            name=b.get("name"),
            unionid=b.get("unionid"),
            **_delivery(b),
        )
        return jsonify(asdict(event))

    @bp.post("/group_chats/<chat_id>/invite")
    def invite_to_group(chat_id: str) -> Response:
        b = _body()
        event = sim.invite_to_group(
            chat_id,
            _strings(b, "members"),
            b["invitor"],
            by_link=bool(b.get("by_link", False)),
            **_delivery(b),
        )
        return jsonify(asdict(event))

    @bp.post("/group_chats/<chat_id>/leave")
    def leave_group(chat_id: str) -> Response:
        b = _body()
        event = sim.leave_group(
            chat_id, b["member"], removed=bool(b.get("removed", False)), **_delivery(b)
        )
        return jsonify(asdict(event))

    @bp.post("/group_chats/<chat_id>/rename")
    def rename_group(chat_id: str) -> Response:
        b = _body()
        return jsonify(asdict(sim.rename_group(chat_id, str(b["name"]), **_delivery(b))))

    @bp.post("/group_chats/<chat_id>/notice")
    def change_group_notice(chat_id: str) -> Response:
        b = _body()
        event = sim.change_group_notice(chat_id, str(b["notice"]), **_delivery(b))
        return jsonify(asdict(event))

    @bp.post("/group_chats/<chat_id>/owner")
    def change_group_owner(chat_id: str) -> Response:
        b = _body()
        return jsonify(asdict(sim.change_group_owner(chat_id, b["userid"], **_delivery(b))))

    @bp.post("/group_chats/<chat_id>/dismiss")
    def dismiss_group(chat_id: str) -> Response:
        return jsonify(asdict(sim.dismiss_group(chat_id, **_delivery(_body()))))

    @bp.get("/group_chats")
    def group_chats() -> Response:
        return jsonify(group_chats=[asdict(c) for c in sim.group_chats.values()])

    @bp.get("/join_ways")
    def join_ways() -> Response:
        return jsonify(join_ways=[w.to_api() for w in sim.join_ways.values()])

    @bp.post("/relations")
    def add_relation() -> Response:
        b = _body()
        ext = sim.add_relation(
            b["userid"],
            b.get("external_userid"),
            name=b.get("name"),
            unionid=b.get("unionid"),
            state=b.get("state", ""),
            tag_ids=b.get("tag_ids"),
            personal_tags=[(str(g), str(n)) for g, n in b.get("personal_tags") or []],
        )
        return jsonify(external_userid=ext)

    @bp.post("/rule_tags")
    def add_rule_tag() -> Response:
        b = _body()
        return jsonify(tag_id=sim.add_rule_tag(b["group_name"], b["tag_name"]))

    @bp.post("/rate_limit")
    def set_rate_limit() -> Response:
        b = _body()
        per_minute, per_hour = b.get("per_minute"), b.get("per_hour")
        sim.set_rate_limit(
            b.get("api_path"),
            per_minute=None if per_minute is None else int(per_minute),
            per_hour=None if per_hour is None else int(per_hour),
        )
        return jsonify(ok=True)

    @bp.post("/settings")
    def settings() -> Response:
        b = _body()
        if "unionid_bound" in b:
            sim.unionid_bound = bool(b["unionid_bound"])
        if "groupmsg_task_delay" in b:
            sim.groupmsg_task_delay = float(b["groupmsg_task_delay"])
        return jsonify(
            unionid_bound=sim.unionid_bound,
            groupmsg_task_delay=sim.groupmsg_task_delay,
            rate_limit_per_minute=sim.rate_limit_per_minute,
            rate_limit_per_hour=sim.rate_limit_per_hour,
        )

    @bp.post("/customer_deletes_staff")
    def customer_deletes_staff() -> Response:
        b = _body()
        sim.customer_deletes_staff(b["external_userid"], b["userid"])
        return jsonify(ok=True)

    @bp.post("/staff_deletes_customer")
    def staff_deletes_customer() -> Response:
        b = _body()
        sim.staff_deletes_customer(b["external_userid"], b["userid"])
        return jsonify(ok=True)

    @bp.post("/staff_edit_tags")
    def staff_edit_tags() -> Response:
        b = _body()
        sim.staff_edit_tags(
            b["userid"], b["external_userid"], add=b.get("add", []), remove=b.get("remove", [])
        )
        return jsonify(ok=True)

    @bp.post("/admin/create_tag")
    def admin_create_tag() -> Response:
        b = _body()
        return jsonify(tag_id=sim.admin_create_tag(b["group_name"], b["tag_name"]))

    @bp.post("/admin/rename_tag")
    def admin_rename_tag() -> Response:
        b = _body()
        sim.admin_rename_tag(b["tag_id"], b["new_name"])
        return jsonify(ok=True)

    @bp.post("/admin/delete_tag")
    def admin_delete_tag() -> Response:
        sim.admin_delete_tag(_body()["tag_id"])
        return jsonify(ok=True)

    @bp.post("/admin/delete_group")
    def admin_delete_group() -> Response:
        sim.admin_delete_group(_body()["group_id"])
        return jsonify(ok=True)

    @bp.post("/group_msgs/confirm")
    def confirm_waiting_group_msgs() -> Response:
        userid = _body().get("userid")
        return jsonify(
            confirmed=sim.confirm_waiting_group_msgs(None if userid is None else str(userid))
        )

    @bp.post("/group_msgs/<msgid>/confirm")
    def confirm_group_msg(msgid: str) -> Response:
        return jsonify(statuses=sim.confirm_group_msg(msgid, _body()["userid"]))

    @bp.post("/faults")
    def inject_fault() -> Response:
        b = _body()
        sim.inject_fault(b["api_path"], int(b.get("errcode", -1)), int(b.get("count", 1)))
        return jsonify(ok=True)

    @bp.post("/error_rates")
    def inject_error_rate() -> Response:
        b = _body()
        sim.inject_error_rate(
            b["api_path"], float(b["rate"]), int(b.get("errcode", -1)), seed=int(b.get("seed", 0))
        )
        return jsonify(ok=True)

    @bp.post("/fault_windows")
    def inject_fault_window() -> Response:
        b = _body()
        sim.inject_fault_window(b["api_path"], float(b["seconds"]), int(b.get("errcode", 45009)))
        return jsonify(ok=True)

    @bp.post("/stalls")
    def inject_stall() -> Response:
        b = _body()
        sim.inject_stall(b["api_path"], float(b["seconds"]), int(b.get("count", 1)))
        return jsonify(ok=True)

    @bp.post("/expire_tokens")
    def expire_tokens() -> Response:
        sim.expire_tokens()
        return jsonify(ok=True)

    @bp.route("/rate_limit", methods=["GET", "PUT"])
    def rate_limit() -> Response:
        if request.method == "PUT":
            b = _body()
            sim.set_rate_limit(per_minute=b.get("per_minute"), per_hour=b.get("per_hour"))
        state = sim.state
        return jsonify(per_minute=state.rate_limit_per_minute, per_hour=state.rate_limit_per_hour)

    @bp.post("/reset_counters")
    def reset_counters() -> Response:
        sim.reset_counters()
        return jsonify(ok=True)

    @bp.post("/advance_time")
    def advance_time() -> Response:
        sim.advance_time(float(_body()["seconds"]))
        return jsonify(ok=True)

    @bp.route("/callback_url", methods=["GET", "PUT"])
    def callback_url() -> Response:
        if request.method == "PUT":
            sim.callback_url = _body().get("url") or None
        return jsonify(url=sim.callback_url)

    @bp.post("/verify_callback_url")
    def verify_callback_url() -> Response:
        delivery = sim.verify_callback_url(_body().get("echo"))
        return jsonify(asdict(delivery))

    @bp.post("/callbacks")
    def post_callback() -> Response:
        b = _body()
        deliveries = sim.post_callback(b["xml"], times=int(b.get("times", 1)))
        return jsonify(deliveries=[asdict(d) for d in deliveries])

    @bp.get("/calls")
    def calls() -> Response:
        by_path: dict[str, int] = {}
        by_errcode: dict[str, dict[str, int]] = {}
        for key, count in sim.calls.items():
            if isinstance(key, tuple):
                by_errcode.setdefault(key[0], {})[str(key[1])] = count
            else:
                by_path[key] = count
        return jsonify(by_path=by_path, by_errcode=by_errcode)

    @bp.get("/welcomes")
    def welcomes() -> Response:
        return jsonify(welcomes=[asdict(w) for w in sim.welcomes])

    @bp.get("/app_messages")
    def app_messages() -> Response:
        return jsonify(app_messages=sim.app_messages, dropped=sim.app_message_drops)

    @bp.get("/contact_ways")
    def contact_ways() -> Response:
        return jsonify(contact_ways=[w.to_api() for w in sim.contact_ways.values()])

    @bp.get("/group_msgs")
    def group_msgs() -> Response:
        return jsonify(group_msgs=[asdict(m) for m in sim.group_msgs.values()])

    @bp.get("/tags")
    def tags() -> Response:
        return jsonify(catalogue=sim.tag_catalogue())

    @bp.get("/relation_tags")
    def relation_tags() -> Response:
        userid = request.args.get("userid", "")
        ext = request.args.get("external_userid", "")
        kinds = sim.relation_tag_kinds(userid, ext)
        return jsonify(
            tag_ids=sorted(sim.relation_tags(userid, ext)),
            personal=kinds["personal"],
            rule=kinds["rule"],
        )

    @bp.get("/deliveries")
    def deliveries() -> Response:
        return jsonify(deliveries=[asdict(d) for d in sim.deliveries])

    return bp
