"""What the touched re-tier keeps between batches in one process: its engine and wake-up."""

from __future__ import annotations

import threading

from bot.tiering.engine import MetricsEngine


class TouchedState:
    """This process's long-lived engine: it keeps the rank population between batches."""

    def __init__(self) -> None:
        self.engine: MetricsEngine | None = None
        self.wakeup = threading.Event()
        self.lock = threading.Lock()

    def close(self) -> None:
        """Close the engine (Runtime.close calls this)."""
        with self.lock:
            if self.engine is not None:
                self.engine.close()
                self.engine = None
