"""The ⓘ definitions of the 触达 and 流失 pages' numbers, added to bot.reports.definitions."""

from __future__ import annotations

from bot.reports.definitions import DEFINITIONS, Definition

_ALL = (
    # --- 触达 -------------------------------------------------------------------------
    Definition(
        "campaign_holdout",
        "对照组比例",
        "按（活动名, 客户）的稳定哈希留出的比例；对照组只记录、从不触达，用来衡量效果。",
    ),
    Definition(
        "campaign_audience",
        "目标人数",
        "符合活动层级（及 when 条件）的客户数，未排除任何人之前。",
    ),
    Definition(
        "campaign_treatment",
        "实验组",
        "本次将被触达的客户数（已排除冷却期、频次上限和对照组）。",
    ),
    Definition(
        "campaign_holdout_n",
        "对照组",
        "落入对照组、本次不触达的客户数，只用于效果评估。",
    ),
    Definition(
        "campaign_capped",
        "达频次上限",
        "今天已收到过活动消息，或 7 天 / 30 天内达到配置的上限，本次跳过的客户数。",
    ),
    Definition(
        "campaign_cooling",
        "冷却期内",
        "本活动在 cooldown_days 天内已选中过（实验组或对照组），本次跳过的客户数。",
    ),
    Definition(
        "campaign_unreachable",
        "无法触达",
        "已没有任何员工好友关系的客户数（群发和员工提醒都无法送达）。",
    ),
    Definition(
        "campaign_staff",
        "涉及员工",
        "实验组客户所属的员工数；群发时每位员工收到一个待确认的群发任务。",
    ),
    Definition(
        "run_expected",
        "预计发送",
        "该员工负责的实验组客户数。",
    ),
    Definition(
        "run_sent",
        "已送达",
        "企业微信确认已送达的客户数（员工已确认发送；跟进提醒为已通知，Webhook 为已推送）。",
    ),
    Definition(
        "run_waiting",
        "待员工确认",
        "群发任务已在企业微信创建、员工尚未确认发送的客户数；3 天内未确认记为“员工未确认”。",
    ),
    Definition(
        "run_not_sent",
        "未送达",
        "已不是好友、客户接收达上限（当天已收到其他群发）、员工未确认或发送失败的客户数。",
    ),
    Definition(
        "uplift",
        "提升（实验组 − 对照组）",
        "意向处理（ITT）：实验组全部客户（无论是否送达）对比对照组；区间为 9"
        "5% 置信区间，区间不含 0 即为显著。",
    ),
    Definition(
        "uplift_chart",
        "转化率提升及 95% 区间",
        "每个层级（选中时的层级）实验组与对照组转化率之差，竖线为 95% 置信区间（Newcombe 法）。",
    ),
    Definition(
        "roi",
        "ROI（投入产出比）",
        "增量收入 ÷ 成本。增量收入 = 30 天人均消费提升（实验组 − 对照"
        "组，ITT）× 实验组人数；成本 = cost_per_delivery"
        " × 实验组已触达人数。区间由人均消费提升的 95% 区间（Welch "
        "t）换算。大于 1 即收回成本。",
    ),
    Definition(
        "incremental_revenue",
        "增量收入",
        "30 天人均消费提升 × 实验组人数（元）；只计观察期已满 30 天的运行。",
    ),
    Definition(
        "campaign_cost",
        "成本",
        "cost_per_delivery × 实验组已触达人数（元）；未送达的客户不计成本。",
    ),
    # --- 流失 -------------------------------------------------------------------------
    Definition(
        "churn_members",
        "流失预警客户",
        "当前处于“流失预警”层级的客户数，截至最近一次分层运行；列表按进入时间从新到旧。",
    ),
    Definition(
        "lost_by_customer",
        "已流失·客户删员工",
        "客户删除或拉黑了员工的好友关系数（del_follow_user 回调）；一位客户删了两名员工算两条。",
    ),
    Definition(
        "lost_by_staff",
        "员工删客户",
        "员工删除了客户的好友关系数（del_external_contact 回调）。",
    ),
    Definition(
        "retention_days",
        "留存天数",
        "从添加好友到流失经过的整天数。",
    ),
    Definition(
        "loss_trend",
        "流失趋势",
        "按天（配置时区）统计的客户删员工、员工删客户人数（去重），以及每天结束时"
        "流失预警层级的人数。",
    ),
)

DEFINITIONS.update({d.key: d for d in _ALL})
