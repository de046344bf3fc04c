"""Prometheus metrics for WeCom API calls (registered by the app factory, served at /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from bot.metriclabels import FirstSeen

ERRCODE_LABELS = 40

CALLS = Counter(
    "tagbot_wecom_calls",
    "WeCom API HTTP calls by API path and errcode (-2: network error or timeout).",
    ["api", "errcode"],
    registry=None,
)
LATENCY = Histogram(
    "tagbot_wecom_call_seconds",
    "Latency of WeCom API HTTP calls by API path.",
    ["api"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=None,
)


# Codes wecom-api.md names keep their label; of the rest (WeCom has hundreds, a handful
# show up in one deployment) the first ERRCODE_LABELS do, then `other`.
DOCUMENTED_ERRCODES = frozenset(
    str(code)
    for code in (
        *(0, -1, -2, 6000, 301002, 40001, 40002, 40003, 40004, 40005, 40006, 40007, 40008),
        *(40009, 40010, 40011, 40014, 40058, 40063, 40068, 40071, 40096, 40098, 40100),
        *(41001, 41035, 41037, 41041, 41045, 41046, 41048, 41049, 41050, 41051, 41053),
        *(41054, 41063, 41064, 41065, 41093, 41094, 41096, 41099, 42001, 45009, 45033),
        *(45035, 48002, 60011, 60020, 60111, 81013, 82001, 84061, 84074, 84085),
    )
)
_errcode_label = FirstSeen(ERRCODE_LABELS, always=DOCUMENTED_ERRCODES)


# Each call's labelled children, looked up once per (api, errcode): `labels()` validates
# and joins its arguments under a lock on every call, three times per scan.
_children: dict[tuple[str, int], tuple[Any, Any]] = {}


def record(api: str, errcode: int, seconds: float) -> None:
    """Count one HTTP call and observe its latency."""
    pair = _children.get((api, errcode))
    if pair is None:
        pair = (
            CALLS.labels(api=api, errcode=_errcode_label(str(errcode))),
            LATENCY.labels(api=api),
        )
        if len(_children) < 4096:  # api paths and codes are few; bounded all the same
            _children[(api, errcode)] = pair
    pair[0].inc()
    pair[1].observe(seconds)


# The shared per-API budget (bot.wecom.budget), as this process last saw it; lanes are
# interactive | bulk and windows minute | hour.
BUDGET_USED = Gauge(
    "tagbot_wecom_budget_used",
    "Calls booked in WeCom's per-API budget window by every process, by lane.",
    ["api", "lane", "window"],
    registry=None,
)
BUDGET_REMAINING = Gauge(
    "tagbot_wecom_budget_remaining",
    "Calls a lane may still book in WeCom's per-API budget window.",
    ["api", "lane", "window"],
    registry=None,
)
BUDGET_RESERVED = Counter(
    "tagbot_wecom_budget_reserved",
    "Calls this process reserved from the shared budget, by API and lane.",
    ["api", "lane"],
    registry=None,
)

METRICS = (CALLS, LATENCY, BUDGET_USED, BUDGET_REMAINING, BUDGET_RESERVED)
