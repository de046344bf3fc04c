"""The bot served over real HTTP in the test process."""

from __future__ import annotations

import threading

from werkzeug.serving import make_server

from bot.config import Settings
from bot.runtime import Runtime
from handlers.app import create_app
from jobs.background import Background


class LiveServer:
    """The bot served over real HTTP on a free port, optionally with its background jobs."""

    def __init__(self, settings: Settings, *, jobs: bool = True) -> None:
        self.app = create_app(settings)
        self.runtime: Runtime = self.app.extensions["tagbot"]
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.background: Background | None = None
        self.jobs = jobs

    def start(self) -> LiveServer:
        self.thread.start()
        if self.jobs:
            self.background = Background(self.runtime)
            self.background.start_workers()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        if self.background is not None:
            self.background.stop()
        self.runtime.close()
