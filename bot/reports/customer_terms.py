"""The ⓘ definitions of the numbers on the 客户 pages (beside bot.reports.definitions)."""

from __future__ import annotations

from bot.reports.definitions import Definition

_ALL = (
    Definition(
        "page_rows",
        "本页客户",
        "本页列出的客户数（每页最多 50 位，按客户建档先后，最新的在前）；"
        "同一客户加了多名员工只占一行。",
    ),
    Definition(
        "added_at",
        "首次添加时间",
        "客户第一次添加员工为好友的时间（按配置时区）；加了多名员工时取最早的一次。",
    ),
    Definition(
        "tier_since",
        "所在天数",
        "从进入当前层级的那次分层运行算起的天数（按配置时区的自然日）。",
    ),
    Definition(
        "paid_amount",
        "累计支付",
        "该客户全部已支付订单的金额合计（元），不含已退款订单；来自业务系统导入的订单。",
    ),
    Definition("paid_count", "支付订单数", "该客户已支付（未退款）的订单数。"),
    Definition("refunded_count", "退款订单数", "该客户已退款的订单数，不计入累计支付。"),
    Definition(
        "interactions",
        "互动次数",
        "业务系统导入的该客户全部互动事件数（浏览、加购、咨询、点击等，不限时间）。",
    ),
    Definition(
        "metric_values",
        "指标取值",
        "按当前数据为该客户实时计算的指标，与分层规则中的阈值比较；"
        "与最近一次分层时的取值不同时，下次分层会按新的取值调整层级。",
    ),
    Definition(
        "timeline",
        "轨迹",
        "添加与流失、层级变动及原因、系统打标签、订单、互动、触达活动，最新的在前；"
        "每类最多读取最近 50 条，合计最多显示 100 条。",
    ),
)

TERMS: dict[str, Definition] = {d.key: d for d in _ALL}


def term(key: str) -> Definition:
    """Return the definition of a 客户 page number (KeyError for an unknown key: a typo)."""
    return TERMS[key]
