"""A stand-in for the WeCom client's JS-SDK (`@wecom/jssdk`'s `window.ww`), for browser tests.

`GET /jssdk/standin.js` defines `ww` with the surface the sidebar page uses: `register`,
`getContext`, `getCurExternalContact`, `ensureConfigReady`, `env`. Each call asks for the
page's signatures through the callbacks given to `register`, with the URL as the SDK
computes it (`location.href` without the fragment), and posts them to `POST /jssdk/invoke`,
where the simulator checks them as WeCom does (wecom-api.md section 7.6): sha1 over a ticket
it issued and that has not expired, of the right kind (the corp's for `getConfigSignature`,
the app's for `getAgentConfigSignature`), for the page URL without its fragment, with this
corp's id and this app's agent id. Every signature given must verify (an old client checks
both identities); `getCurExternalContact` needs the app's. A failure answers WeCom's string,
`<api>:fail no permission`, and calls `onConfigFail` / `onAgentConfigFail` with
`config:fail invalid signature` / `agentConfig:fail invalid signature`.

The open chat comes from the control API (`Simulator.open_chat`): its entry answers
getContext and its customer getCurExternalContact (only from single_chat_tools,
contact_profile and single_kf_tools, else `…:fail without context of external contact`).
`Simulator.outside_wecom()` plays a plain browser: `ww.env.isWeCom` is false and every call
fails with `<api>:fail not in wecom client`. (The real SDK's calls never settle outside the
client: a page must look at `ww.env.isWeCom` first.)
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, request

from wecom_sim.state import OpenChat, SimState

if TYPE_CHECKING:
    from wecom_sim.server import Simulator

ENTRIES = frozenset(
    {
        "contact_profile",
        "single_chat_tools",
        "group_chat_tools",
        "chat_attachment",
        "single_kf_tools",
        "chain_single_chat_tools",
        "chain_group_chat_tools",
        "internal_group_chat_board",
        "normal",
    }
)
# getCurExternalContact works from these entries only (doc 96918).
CONTACT_ENTRIES = frozenset({"contact_profile", "single_chat_tools", "single_kf_tools"})
APIS = frozenset({"getContext", "getCurExternalContact"})


def js_signature(ticket: str, nonce_str: str, timestamp: str, url: str) -> str:
    """Return WeCom's JS-SDK signature (the simulator's own copy of the formula)."""
    plain = f"jsapi_ticket={ticket}&noncestr={nonce_str}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(plain.encode()).hexdigest()  # noqa: S324  (WeCom's protocol is sha1)


def signature_valid(
    state: SimState,
    kind: str,
    *,
    corp_id: str,
    agent_id: str,
    href: str,
    signed: dict[str, Any],
) -> bool:
    """Tell whether `signed` ({timestamp, nonceStr, signature}) is WeCom-valid for the page."""
    if corp_id != state.corp_id:
        return False
    if kind == "agent" and agent_id != str(state.agent_id):
        return False
    url = href.split("#", 1)[0]  # the client checks the URL without its fragment
    timestamp, nonce, signature = (
        str(signed.get(k, "")) for k in ("timestamp", "nonceStr", "signature")
    )
    if not (timestamp and nonce and signature):
        return False
    now = state.now()
    wanted_agent = state.agent_id if kind == "agent" else 0
    return any(
        t.kind == kind
        and t.agent_id == wanted_agent
        and t.expires_at > now
        and js_signature(ticket, nonce, timestamp, url) == signature
        for ticket, t in state.js_tickets.items()
    )


def invoke(state: SimState, payload: dict[str, Any]) -> dict[str, Any]:
    """Answer one `ww` call as the WeCom client would; hold `state.lock`."""
    api = str(payload.get("api", ""))
    answer = _answer(state, api, payload)
    state.jssdk_calls.append({"api": api, "errMsg": str(answer["errMsg"])})
    return answer


def _answer(state: SimState, api: str, payload: dict[str, Any]) -> dict[str, Any]:
    if not state.in_wecom:
        return {"errMsg": f"{api}:fail not in wecom client"}
    if api not in APIS:
        return {"errMsg": f"{api}:fail not supported by the simulator's stand-in"}
    href = str(payload.get("href", ""))
    if urlsplit(href).scheme not in ("http", "https"):
        return {"errMsg": f"{api}:fail invalid url domain"}
    ids = {"corp_id": str(payload.get("corpId", "")), "agent_id": str(payload.get("agentId", ""))}
    registered: dict[str, bool] = {}
    failures: dict[str, str] = {}
    for kind, field, name in (("corp", "config", "config"), ("agent", "agentConfig", "agent")):
        signed = payload.get(field)
        if isinstance(signed, dict):
            ok = signature_valid(state, kind, href=href, signed=signed, **ids)
            registered[name] = ok
            if not ok:
                failures[field] = f"{field}:fail invalid signature"
    if not registered or failures:
        return {"errMsg": f"{api}:fail no permission", "registration": failures}
    chat = state.open_chat
    entry = chat.entry if chat else "normal"
    if api == "getContext":
        return {"errMsg": "getContext:ok", "entry": entry, "shareTicket": ""}
    if not registered.get("agent"):  # getCurExternalContact needs the app identity
        return {"errMsg": f"{api}:fail no permission", "registration": {}}
    if chat is None or entry not in CONTACT_ENTRIES:
        return {"errMsg": f"{api}:fail without context of external contact"}
    return {"errMsg": f"{api}:ok", "userId": chat.external_userid}


def open_chat(state: SimState, userid: str, external_userid: str, entry: str) -> None:
    """Open the page in a chat (or profile): the entry and the customer `ww` will report."""
    if entry not in ENTRIES:
        raise ValueError(f"entry must be one of {sorted(ENTRIES)}")
    if entry in CONTACT_ENTRIES and not external_userid:
        raise ValueError(f"entry {entry} needs an external_userid")
    state.in_wecom = True
    state.open_chat = OpenChat(userid, external_userid, entry)


STANDIN_JS = """// The simulator's stand-in for @wecom/jssdk (window.ww): see wecom_sim/jssdk.py.
var ww = (function () {
  "use strict";
  var SIM = %(sim)s;
  var env = %(env)s;
  var options = null;
  var signed = {};  // url -> {config, agentConfig} promises, as the SDK caches per URL
  function safeRun(fn, arg) { try { if (typeof fn === "function") fn(arg); } catch (e) {} }
  function signatures(url) {
    if (!signed[url]) {
      var o = options || {};
      signed[url] = Promise.all([
        o.getConfigSignature ? Promise.resolve(o.getConfigSignature(url)) : null,
        o.getAgentConfigSignature ? Promise.resolve(o.getAgentConfigSignature(url)) : null
      ]);
      signed[url].catch(function () { delete signed[url]; });
    }
    return signed[url];
  }
  function call(api, params) {
    params = params || {};
    var work = (async function () {
      if (!env.isWeCom) {
        throw { errMsg: api + ":fail not in wecom client" };
      }
      var url = location.href.split("#")[0];
      var sigs = await signatures(url);
      var o = options || {};
      var res = await fetch(SIM + "/jssdk/invoke", {
        method: "POST",
        headers: { "Content-Type": "text/plain" },  // a simple request: no CORS preflight
        body: JSON.stringify({
          api: api, href: location.href, corpId: o.corpId || "",
          agentId: o.agentId === undefined ? "" : String(o.agentId),
          config: sigs[0], agentConfig: sigs[1]
        })
      });
      var answer = await res.json();
      var failed = answer.registration || {};
      if (failed.config) safeRun(o.onConfigFail, { errMsg: failed.config });
      if (failed.agentConfig) safeRun(o.onAgentConfigFail, { errMsg: failed.agentConfig });
      delete answer.registration;
      if (!/:ok$/.test(answer.errMsg)) throw answer;
      return answer;
    })();
    return work.then(function (r) { safeRun(params.success, r); safeRun(params.complete, r); return r; },
                     function (e) { safeRun(params.fail, e); safeRun(params.complete, e); throw e; });
  }
  return {
    SDK_VERSION: "2.4.4-simulator-standin",
    env: env,
    register: function (o) { options = o; signed = {}; },
    ensureConfigReady: function () { return call("getContext"); },
    getContext: function (p) { return call("getContext", p); },
    getCurExternalContact: function (p) { return call("getCurExternalContact", p); }
  };
})();
"""


def _cors(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Cache-Control"] = "no-store"
    return response


def jssdk_blueprint(sim: Simulator) -> Blueprint:
    """Return the blueprint of the JS-SDK stand-in bound to `sim`."""
    bp = Blueprint("jssdk", __name__)

    @bp.get("/jssdk/standin.js")
    def standin() -> Response:
        with sim.state.lock:
            env = {"isWeCom": sim.state.in_wecom, "isWeChat": False}
        body = STANDIN_JS % {
            "sim": json.dumps(request.host_url.rstrip("/")),
            "env": json.dumps(env),
        }
        return _cors(Response(body, mimetype="text/javascript"))

    @bp.route("/jssdk/invoke", methods=["POST", "OPTIONS"])
    def invoke_route() -> Response:
        if request.method == "OPTIONS":
            return _cors(Response(status=204))
        try:
            payload = json.loads(request.get_data() or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return _cors(jsonify(errMsg="invoke:fail bad request"))
        with sim.state.lock:
            answer = invoke(sim.state, payload)
        return _cors(jsonify(answer))

    @bp.post("/control/open_chat")
    def control_open_chat() -> Response:
        data = request.get_json(silent=True)
        body = data if isinstance(data, dict) else {}
        try:
            sim.open_chat(
                str(body.get("userid", "")),
                str(body.get("external_userid", "")),
                entry=str(body.get("entry", "single_chat_tools")),
            )
        except ValueError as exc:
            return Response(json.dumps({"error": str(exc)}), 400, mimetype="application/json")
        return jsonify(ok=True)

    @bp.post("/control/outside_wecom")
    def control_outside() -> Response:
        sim.outside_wecom()
        return jsonify(ok=True)

    @bp.post("/control/ticket_limits")
    def control_ticket_limits() -> Response:
        data = request.get_json(silent=True)
        body = data if isinstance(data, dict) else {}
        limits = {k: body.get(k) for k in ("per_hour_corp", "per_hour_app")}
        if any(v is not None and (type(v) is not int or v < 0) for v in limits.values()):
            return Response(
                json.dumps({"error": "limits are whole numbers >= 0"}),
                400,
                mimetype="application/json",
            )
        sim.set_ticket_limits(**limits)
        return jsonify(ok=True)

    @bp.get("/control/jssdk")
    def control_jssdk() -> Response:
        return jsonify(sim.jssdk_summary())

    return bp
