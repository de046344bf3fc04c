"""Run one job: own its logging and metrics; a failure is logged and the process goes on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter, Histogram

from bot.errors import StoppedError
from bot.runtime import Runtime

log = logging.getLogger("tagbot.jobs")

JOB_RUNS = Counter(
    "tagbot_job_runs_total", "Job runs by job and outcome", ["job", "outcome"], registry=None
)
JOB_SECONDS = Histogram("tagbot_job_seconds", "Job run time", ["job"], registry=None)
METRICS = (JOB_RUNS, JOB_SECONDS)

T = TypeVar("T")


def run_job(rt: Runtime, name: str, fn: Callable[[Runtime], T]) -> T | None:
    """Run `fn(rt)`, logging and counting the outcome; return None when it failed."""
    started = time.monotonic()
    try:
        result = fn(rt)
    except StoppedError as exc:  # SIGTERM: given up at a safe point, not a failure to chase
        JOB_RUNS.labels(name, "stopped").inc()
        log.info("job %s stopped: %s", name, exc)
        return None
    except Exception:
        JOB_RUNS.labels(name, "error").inc()
        log.exception("job %s failed", name)
        return None
    finally:
        JOB_SECONDS.labels(name).observe(time.monotonic() - started)
    JOB_RUNS.labels(name, "ok").inc()
    return result
