"""The names tier rules may use: every metric with its kind and definition (a contract).

The metrics engine computes exactly these columns; the rule checker accepts exactly these
names, plus `profile.<attribute>`, `tier.<earlier dimension>` and `group.<group name>`. The README's metric table
is written from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["number", "string", "boolean"]

# Interaction kinds with their own counters; other kinds still count in interactions_*.
INTERACTION_KINDS: dict[str, str] = {
    "view": "views",
    "cart": "carts",
    "inquiry": "inquiries",
    "click": "clicks",
}


@dataclass(frozen=True)
class Metric:
    """One named per-customer value."""

    name: str
    kind: Kind
    definition: str  # Chinese, for the README table and `customer show`
    count: bool = False  # counts are 0, never missing


def _m(name: str, kind: Kind, definition: str, *, count: bool = False) -> Metric:
    return Metric(name, kind, definition, count)


METRICS: tuple[Metric, ...] = (
    # Orders: paid orders only; windows are (as_of - N days, as_of].
    _m("spend_365d", "number", "近 365 天已支付订单金额合计（元）"),
    _m("orders_365d", "number", "近 365 天已支付订单数", count=True),
    _m("aov_365d", "number", "近 365 天客单价（元）= spend_365d / orders_365d"),
    _m("max_order_365d", "number", "近 365 天最大单笔金额（元）"),
    _m("spend_total", "number", "累计已支付金额（元）"),
    _m("orders_total", "number", "累计已支付订单数", count=True),
    _m("days_since_last_order", "number", "距最近一次支付的天数"),
    _m("days_since_first_order", "number", "距首次支付的天数"),
    _m("ipt_median", "number", "相邻两次支付间隔天数的中位数（少于 2 单时缺失）"),
    _m("overdue_ratio", "number", "days_since_last_order / ipt_median，>1 表示超出自身购买节奏"),
    _m("new_product_share_180d", "number", "近 180 天订单中新品订单占比（0–1）"),
    _m(
        "repeat_category_orders_180d",
        "number",
        "近 180 天内购买此前买过的品类的订单数",
        count=True,
    ),
    _m("spend_percentile_365d", "number", "近 365 天消费金额在有购买客户中的百分位（0–100）"),
    _m("top_category_365d", "string", "近 365 天消费金额最高的品类"),
    _m("r_score", "number", "R 分（1–5，越近越高，按近 365 天有购买客户五分位，并列同分）"),
    _m("f_score", "number", "F 分（1–5，按近 365 天订单数：1 / 2 / 3–4 / 5–9 / 10+）"),
    _m("m_score", "number", "M 分（1–5，按近 365 天消费金额五分位，并列同分）"),
    # Predictive (bot/tiering/metrics_predictive.py): BG/NBD and Gamma-Gamma, fitted over all
    # buyers by each full re-tier; a purchase is a local day with a paid order.
    _m(
        "p_alive",
        "number",
        "仍是活跃客户的概率（0–1，BG/NBD：按购买次数、首单与最近一单距今天数）；无支付订单时缺失",
    ),
    _m("expected_orders_90d", "number", "预计未来 90 天的购买次数（BG/NBD，同一天多单算一次）"),
    _m(
        "expected_aov",
        "number",
        "预计每次购买金额（元，Gamma-Gamma）；在不同的两天有过支付才有，否则缺失",
    ),
    _m("clv_365d", "number", "预计未来 365 天消费金额（元）= 预计购买次数 × 预计每次金额"),
    _m(
        "clv_percentile",
        "number",
        "clv_365d 在近 365 天有购买客户中的百分位（0–100，并列同分；近 365 天无购买时缺失）",
    ),
    # Interactions.
    # Interactions: every kind of interaction event, plus group joins the customer made
    # (scanned a group QR or accepted a link invitation; being pulled in directly is not).
    _m(
        "interactions_30d",
        "number",
        "近 30 天互动次数（全部类型，含客户扫码或点邀请链接入群）",
        count=True,
    ),
    _m(
        "interactions_90d",
        "number",
        "近 90 天互动次数（全部类型，含客户扫码或点邀请链接入群）",
        count=True,
    ),
    _m("days_since_last_interaction", "number", "距最近一次互动（含扫码或点邀请链接入群）的天数"),
    _m("views_30d", "number", "近 30 天浏览次数（kind = view）", count=True),
    _m("carts_30d", "number", "近 30 天加购次数（kind = cart）", count=True),
    _m("inquiries_30d", "number", "近 30 天咨询次数（kind = inquiry）", count=True),
    _m("clicks_90d", "number", "近 90 天点击次数（kind = click）", count=True),
    _m("intent_no_buy_30d", "boolean", "近 30 天浏览、加购或咨询过，但没有支付订单"),
    # Reach: treatment deliveries of 群发 campaigns WeCom created (bot/tiering/metrics_outreach.py).
    _m(
        "messages_90d", "number", "近 90 天收到的群发数（实验组，企业微信已创建；从未群发过则缺失）"
    ),
    _m(
        "reach_rate_90d",
        "number",
        "近 90 天群发触达率（0–1）= 已送达 ÷ 已有结果（送达、非好友、超额、员工未确认）",
    ),
    _m(
        "click_rate_90d",
        "number",
        "近 90 天群发点击率（0–1）= 送达后 3 天内有点击（kind = click）的群发 ÷ 群发数",
    ),
    # Relations and profile.
    _m("days_since_added", "number", "距首次添加员工为好友的天数"),
    _m("channel", "string", "客户首次添加时所扫渠道活码的名称"),
    _m("staff_count", "number", "当前仍是好友的员工数", count=True),
    _m("gender", "string", "性别：男 / 女 / 未知"),
    # Customer groups (客户群, bot/tiering/metrics_groups.py); `group.<群名>` is true/false.
    _m("groups_count", "number", "当前所在的客户群数", count=True),
    _m("days_since_group_join", "number", "距最近一次入群的天数（含已退出的群；从未入群则缺失）"),
    _m("group_channel", "string", "客户首次经渠道群活码入群时所扫渠道的名称"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

PROFILE_PREFIX = "profile."  # imported attributes: text, compared as numbers when numeric
TIER_PREFIX = "tier."  # the tier of a dimension listed earlier: string
# `group.<群名>`: whether the customer is in a customer group of that name now (boolean,
# never missing: false when in no group of that name, or in none at all). A name that is not
# letters, digits and _ is written quoted, `group["VIP 会员群"]` (bot.rules.grammar).
GROUP_PREFIX = "group."
# The frame's column listing the names of the groups a customer is in now (not a metric:
# rules read it through `group.<群名>`).
GROUP_NAMES_COLUMN = "group_names"
