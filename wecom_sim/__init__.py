"""A fake WeCom (企业微信) for tests, the demo and standalone use: real HTTP, real crypto.

It does not import wechatpy or the bot's services, so its callback crypto checks the bot's
independently. Behaviour follows wecom-api.md; where that page is silent the simulator chooses:
an app editing or deleting a tag it did not create gets 60011; over-long text gets 45002; bad
cursors get 50100; a JSON body that does not parse gets 47001; a wrong HTTP method gets 40058
and a missing parameter 40063 (unless the API has its own code, e.g. 41049 for welcome_code);
联系我 errors use 41037 missing type, 41038 bad type, 41039 missing scene, 41040 bad scene,
41041 >100 users, 41042 bad style, 41043 missing config_id, 41044 unknown config_id;
an unknown API path answers HTTP 404 with 48001; externalcontact/get of a customer nobody
follows any more gets 84061; message/send with a wrong agentid gets 301002.

Held to WeCom's strictness: POST APIs read the JSON body only (query parameters other than
access_token are not seen) and refuse a number sent as a string with 40058; optional fields
(`unionid` unless `unionid_bound`, `remark_corp_name`, `remark_mobiles`, `state`, get's `tags`)
are left out when empty; relations carry corp (type 1), personal (type 2, no tag_id) and
rule-group (type 3) tags; message/send silently drops (errcode 0) what exceeds 30 a minute or
1,000 an hour per member and counts the drops; an existing friend's re-scan posts no event and
a re-add of a former pair has no WelcomeCode; send_welcome_msg after the customer left gets
84061; get_groupmsg_task answers 41063 for `groupmsg_task_delay` s after creation; 45009 comes
past the per-API limits per minute and per hour.

Served under /cgi-bin/ (access_token in the query; POST bodies are JSON): gettoken (GET);
externalcontact/ get, list, get_follow_user_list (GET); externalcontact/ batch/get_by_user,
remark, add|get|update|del|list_contact_way, get|add|edit|del_corp_tag, mark_tag,
send_welcome_msg, add_msg_template, get_groupmsg_list_v2, get_groupmsg_task,
get_groupmsg_send_result, groupchat/list|get, groupchat/add|get|update|del_join_way (see
docs/wecom-groups.md); message/send (POST); get_jsapi_ticket and ticket/get?type=agent_config
(GET: a new ticket per fetch, valid 7200 s; 400 an hour per corp and 100 per app for each kind,
then 45009). GET /jssdk/standin.js is a stand-in for the JS-SDK's `ww` that checks the page's
signatures against those tickets (wecom_sim/jssdk.py). Every call is counted by path and by
(path, errcode); injected stalls, then faults (an error window, a seeded error share,
the next N calls), come before the method, token and rate checks.
Callbacks are POSTed synchronously with a 5 s timeout and are not retried on failure (a
`duplicate` scan, or `post_callback(xml, times=2)`, plays a retry).

Python API: see `Simulator` (wecom_sim/server.py). The same actions over HTTP, JSON in and
out, errors as {"error": ...} with 400 (bad input) or 404 (unknown thing), are listed in
wecom_sim/control_index.py: served at GET /control/ (each with a curl example) and shown by
`tagbot simulator --help`. Also GET / (summary counts) and GET /qr/<config_id>.png (a
placeholder QR image of a scene-2 live code).
"""

from __future__ import annotations

from wecom_sim.callbacks import Delivery
from wecom_sim.crypto import CallbackCrypto, CallbackCryptoError
from wecom_sim.server import GroupEvent, ScanResult, Simulator

__all__ = [
    "CallbackCrypto",
    "CallbackCryptoError",
    "Delivery",
    "GroupEvent",
    "ScanResult",
    "Simulator",
]
