"""Prometheus metrics for WeCom API calls (registered by the app factory, served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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


def record(api: str, errcode: int, seconds: float) -> None:
    """Count one HTTP call and observe its latency."""
    CALLS.labels(api=api, errcode=str(errcode)).inc()
    LATENCY.labels(api=api).observe(seconds)


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
