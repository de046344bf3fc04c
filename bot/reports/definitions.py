"""Every number the console shows, with its name and its ⓘ definition, in one place.

The pages show `label` as the title and `help` in the ⓘ tooltip; the services name their
fields after these keys, so a number and its definition never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Definition:
    """A metric's title and what it counts, for the ⓘ tooltip."""

    key: str
    label: str
    help: str


_ALL = (
    # --- 概览 -------------------------------------------------------------------------
    Definition(
        "customers_total",
        "客户总数（去重）",
        "至少与一名员工仍是好友的客户数；同一客户加了多名员工只算一个。"
        "由渠道统计每 10 分钟汇总一次，见“数据截至”。",
    ),
    Definition(
        "added_today",
        "今日新增",
        "今天（按配置时区）与员工新建立好友关系的客户数（去重）；含今天又流失的客户。"
        "同一客户今天加了两名员工只算一个。",
    ),
    Definition(
        "lost_by_customer_today",
        "今日流失·客户删员工",
        "今天删除或拉黑了员工的客户数（去重，del_follow_user 回调）。",
    ),
    Definition(
        "lost_by_staff_today",
        "今日流失·员工删客户",
        "今天被员工删除的客户数（去重，del_external_contact 回调）。",
    ),
    Definition(
        "lost_other_today",
        "今日流失·其他",
        "今天因离职继承、同步发现已不是好友等原因结束的客户数（去重）。",
    ),
    Definition(
        "net_today",
        "净增",
        "今日新增 − 今日流失（客户删员工 + 员工删客户 + 其他）。",
    ),
    Definition(
        "high_value",
        "高价值客户",
        "价值分层维度（配置中含“高价值”层级的第一个维度）里处于“高价值”层级的客户数，"
        "截至最近一次分层运行。",
    ),
    Definition(
        "churn_warning",
        "流失预警",
        "处于“流失预警”层级的客户数（默认方案的 churn 维度），截至最近一次分层运行。",
    ),
    Definition(
        "vs_yesterday",
        "较昨日",
        "今天的数值减去昨天全天（或昨天结束时）的数值。",
    ),
    Definition(
        "data_as_of",
        "数据截至",
        "渠道与客户统计最近一次汇总的时间；分层数据以最近一次分层运行为准。",
    ),
    Definition(
        "trend",
        "新增与流失趋势",
        "按天（配置时区）统计的新增客户、流失客户（三种原因合计）和净增，均为去重人数；"
        "由渠道统计每 10 分钟汇总一次。",
    ),
    Definition(
        "latest_adds",
        "最新添加",
        "最近新建立的好友关系，最新的在前（每个员工与客户的关系一行）；实时读取。",
    ),
    # --- 分层 -------------------------------------------------------------------------
    Definition(
        "tier_flow",
        "分层流转",
        "所选维度在最近一次全量分层中的层级变动：左边是变动前的层级（“无（前）”表示之前没有"
        "该维度的层级），右边是变动后的层级，连线宽度为客户数；层级没变的客户不画出。",
    ),
    Definition(
        "tier_size",
        "层级人数",
        "最近一次分层运行后处于该层级的客户数；每次分层（每晚全量、数据变化后的增量）都会更新。",
    ),
    Definition(
        "tier_moves",
        "分层流转",
        "一次分层运行中从一个层级移到另一个层级的客户数；“无”表示没有该维度的层级。",
    ),
    Definition(
        "tier_series",
        "层级人数变化",
        "每天（配置时区）最后一次分层运行后各层级的客户数；没有运行的日子沿用前一天的人数。",
    ),
    Definition(
        "tier_matrix",
        "分层流转矩阵",
        "所选分层运行中，从行所示层级（之前）移到列所示层级（之后）的客户数；"
        "“无”表示之前或之后没有该维度的标签。点击格子查看这些客户。",
    ),
    Definition(
        "tier_rules",
        "分层规则",
        "配置文件 [tiering] 中该维度的规则（只读）：层级按顺序判断，第一个满足 when 的生效；"
        "已在某层级的客户按 stay（保留条件）判断是否留下；最短停留天数内不会降级。",
    ),
    Definition(
        "rfm_grid",
        "RFM 八类客户",
        "按最近一次购买（R）、购买次数（F）、消费金额（M）的高低把近一年有购买的客户分成 8 类，"
        "格中为最近一次分层后各类的客户数；高低的门槛见下方规则。",
    ),
    Definition(
        "tier_export",
        "导出层级客户",
        "导出该层级当前的全部客户（.xlsx）：external_userid、名称、跟进员工、层级、进入时间，"
        "以及该维度规则用到的指标在客户进入该层级时的取值。",
    ),
    Definition(
        "trial_matched",
        "满足条件的客户",
        "按现在的数据计算指标后满足该条件的客户数；缺失的指标使比较结果为“未知”，不计入。"
        "指标最多缓存 10 分钟，见“数据截至”。",
    ),
    Definition(
        "run_moves",
        "变动客户",
        "这次分层中至少在一个维度换了层级的客户数。",
    ),
    Definition(
        "last_run",
        "最近一次分层",
        "最近一次分层运行（全量或增量，不含试运行）：完成时间、用时、评估的客户数、"
        "变动客户数和层级变动次数；推送进度从最近一次全量分层算起。",
    ),
    Definition(
        "run_customers",
        "评估客户",
        "这次分层计算了指标并判定层级的客户数。",
    ),
    Definition(
        "run_transitions",
        "层级变动",
        "这次分层中所有维度的层级变动次数合计（一个客户换了两个维度算两次）。",
    ),
    Definition(
        "push_queued",
        "待推送",
        "等待写入企业微信的打标签操作（含正在发送的）。",
    ),
    Definition(
        "push_sent",
        "已推送",
        "已写入企业微信的打标签操作（队列中保留的记录）。",
    ),
    Definition(
        "push_failed",
        "推送失败",
        "重试后仍失败、进入死信的打标签操作，可在“系统”页查看原因并重放。",
    ),
    Definition(
        "push_eta",
        "预计完成",
        "按最近 5 分钟的推送速度估算剩余操作还需的时间；最近没有推送时不估算。",
    ),
    # --- 渠道 -------------------------------------------------------------------------
    Definition(
        "channel_customers",
        "累计添加（去重）",
        "通过该渠道活码添加过员工的客户数（去重），按当前好友关系记录统计："
        "客户删除后又通过其他渠道加回，记在最近一次添加的渠道上。",
    ),
    Definition(
        "channel_added_today",
        "今日添加",
        "今天通过该渠道活码新添加员工的客户数（去重）。",
    ),
    Definition(
        "channel_lost",
        "流失",
        "通过该渠道添加的好友关系今天结束的客户数（去重），分“客户删员工”和“员工删客户”；"
        "离职继承、同步发现等其他原因另计。",
    ),
    Definition(
        "channel_net",
        "净增",
        "今日添加 − 今日流失（客户删员工 + 员工删客户 + 其他）。",
    ),
    Definition(
        "channel_conversion",
        "首单转化率",
        "累计添加（去重）的客户中，在通过该渠道添加之后有过支付订单的比例；每小时更新。",
    ),
    Definition(
        "channel_revenue",
        "营收",
        "这些客户在通过该渠道添加之后的支付订单金额合计（元，不含已退款订单）；"
        "一个客户来自多个渠道时，每个渠道都计入。每小时更新。",
    ),
    # --- 系统 -------------------------------------------------------------------------
    Definition(
        "inbox_depth",
        "待处理回调",
        "已收到、尚未处理完的企业微信回调（等待中与处理中）。",
    ),
    Definition(
        "inbox_dead",
        "回调死信",
        "重试后仍处理失败的回调，可在“系统”页查看原因并重放。",
    ),
    Definition(
        "outbox_depth",
        "待写入企业微信",
        "排队等待写入企业微信的操作（打标签等，含正在发送的）。",
    ),
    Definition(
        "outbox_dead",
        "写入死信",
        "重试后仍写入失败的企业微信操作，可在“系统”页查看原因并重放。",
    ),
    Definition(
        "missed_welcomes",
        "未发出的欢迎语",
        "本进程启动以来，客户扫码添加后没能发出的欢迎语次数"
        "（欢迎语 code 已过期或发送失败）；重启后从 0 计。",
    ),
    Definition(
        "inbox_pending",
        "等待处理",
        "已收到并应答、等待处理的回调（含等待重试的）。",
    ),
    Definition(
        "inbox_processing",
        "处理中",
        "正被某个进程处理的回调；进程退出后会由其他进程接手。",
    ),
    Definition(
        "inbox_done",
        "24小时内已处理",
        "最近 24 小时内收到（或最后一次重试）并已处理完成的回调；企业微信重复推送的同一事件只算一次。",
    ),
    Definition(
        "inbox_ignored",
        "24小时内已忽略",
        "最近 24 小时内收到、与本系统无关而不需处理的回调。",
    ),
    Definition(
        "outbox_pending",
        "排队中",
        "等待写入企业微信的打标签操作（含等待重试的）。",
    ),
    Definition(
        "outbox_in_flight",
        "发送中",
        "已被进程取走、正在调用企业微信的打标签操作。",
    ),
    Definition(
        "dead_attempts",
        "尝试次数",
        "进入死信前处理或发送的次数；重放后从 0 重新计数。",
    ),
    Definition(
        "sync_runs",
        "同步记录",
        "每次与企业微信全量对账（定时任务或 tagbot sync）结束时记一条：开始时间、用时、结果和改动数。",
    ),
    Definition(
        "sync_staff",
        "员工",
        "本次从企业微信读到的、配置了客户联系的员工数。",
    ),
    Definition(
        "sync_customers",
        "客户 新增/更新",
        "本次新写入的客户数 / 资料有变化而更新的客户数。",
    ),
    Definition(
        "sync_relations",
        "跟进关系 新增/更新/流失",
        "本次新发现的好友关系数 / 有变化的关系数 / 企业微信已不存在而标为流失的关系数。",
    ),
    Definition(
        "sync_tags",
        "客户标签 +/−",
        "本次按企业微信补上的、去掉的客户标签数（员工在企业微信里手动改的标签）。",
    ),
    Definition(
        "sync_calls",
        "接口调用",
        "本次对账调用企业微信接口的次数合计。",
    ),
    Definition(
        "run_seconds",
        "用时",
        "从开始到结束的秒数。",
    ),
    Definition(
        "job_last_run",
        "上次运行",
        "这个定时任务最近一次运行结束的时间与结果（成功 / 失败及原因）；从本版本起记录。",
    ),
    Definition(
        "job_next_run",
        "下次运行",
        "按配置的 cron 表达式（配置时区）算出的下次运行时间；只有持有调度租约的进程会真正运行。",
    ),
    Definition(
        "processes_alive",
        "运行中的进程",
        "最近 5 秒内有心跳的 tagbot 进程数（serve、worker、scheduler 各算一个）。",
    ),
    Definition(
        "scheduler_owner",
        "调度进程",
        "当前持有调度租约、负责运行定时任务的进程（主机:进程号）；为空表示没有进程在运行定时任务。",
    ),
    Definition(
        "live_sessions",
        "当前有效会话",
        "尚未退出、也未过期的后台登录会话数。",
    ),
    Definition(
        "audit_total",
        "操作日志",
        "后台的登录、退出和每次修改的记录总数（谁、何时、改了什么、改前改后）。",
    ),
    Definition(
        "config_findings",
        "配置检查",
        "与 tagbot check-config 相同的检查（读取运行中的配置与数据库，不做任何修改）："
        "问题会让 check-config 失败，提醒不会。",
    ),
    Definition(
        "sidebar_checks",
        "侧边栏自检",
        "聊天工具栏侧边栏上线所需的配置：能从配置和数据库判断的直接给出结果，"
        "其余需在企业微信管理后台确认。",
    ),
    Definition(
        "wecom_calls",
        "企业微信调用量",
        "每个接口最近 1 分钟、最近 1 小时已占用的调用次数，与配置的每分钟、每小时预算对比。",
    ),
)

DEFINITIONS: dict[str, Definition] = {d.key: d for d in _ALL}


def define(key: str) -> Definition:
    """Return the definition of metric `key` (KeyError for an unknown key: a typo)."""
    return DEFINITIONS[key]
