"""WeCom's documented limits, named once for every check and cut (see wecom-api.md).

The adapter's constants, kept beside its package rather than in it: `bot.config` and the rule
language check names against them, and the client (which reads the settings) must not be
loaded, nor become a dependency, for that.
"""

from __future__ import annotations

# Corp tags (add_corp_tag / edit_corp_tag): a tag or group name; tags per corp, all groups.
TAG_NAME_MAX = 30
CORP_TAGS_MAX = 3000

# 联系我 (add_contact_way): the `state` a scan reports back, the remark, the members.
CONTACT_WAY_STATE_MAX = 30
CONTACT_WAY_REMARK_MAX = 30
CONTACT_WAY_USERS_MAX = 100  # members per configuration, departments expanded (41041)

# send_welcome_msg: the code works once, for 20 s after the add event.
WELCOME_CODE_SECONDS = 20.0
WELCOME_TEXT_MAX_BYTES = 4000
ATTACHMENTS_MAX = 9  # per welcome and per 群发 (add_msg_template)

# 群发 (add_msg_template, get_groupmsg_*).
MSG_TEMPLATE_CUSTOMERS_MAX = 10_000  # external_userid per call
MSG_TEMPLATE_CHATS_MAX = 2000  # chat_id_list per call (chat_type group)
MSG_TEMPLATE_TEXT_MAX_BYTES = 4000
GROUPMSG_LIST_SPAN_SECONDS = 30 * 86400  # get_groupmsg_list_v2: a range of at most a month
GROUPMSG_LIST_PAGE_MAX = 100
GROUPMSG_RESULT_PAGE_MAX = 1000  # get_groupmsg_task / get_groupmsg_send_result

# Customers: batch/get_by_user takes up to 100 members and pages of up to 100.
BATCH_GET_USERS_MAX = 100
BATCH_GET_PAGE_MAX = 100
CONTACT_WAY_LIST_PAGE_MAX = 1000  # list_contact_way

# App messages (message/send): a text message's content.
APP_TEXT_MAX_BYTES = 2048

# Customer groups (docs/wecom-groups.md): groupchat/list pages and owners per call; a 加入群聊
# join way's groups, state, remark (cut past 30 by WeCom) and auto-created groups' base name.
GROUPCHAT_LIST_PAGE_MAX = 1000
GROUPCHAT_OWNERS_MAX = 100
JOIN_WAY_CHATS_MAX = 5  # 41091 beyond
JOIN_WAY_STATE_MAX = 30
JOIN_WAY_REMARK_MAX = 30
JOIN_WAY_ROOM_BASE_NAME_MAX = 40
# A chat_id as the bot accepts it (WeCom's are `wr` + 30 letters and digits; the column is 64).
CHAT_ID_PATTERN = r"[A-Za-z0-9_\-]{1,64}"
