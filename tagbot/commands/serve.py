"""`tagbot serve`, `tagbot worker`, `tagbot scheduler`: the long-running processes.

Part of the composition root (tagbot/): it puts together handlers/ (the web app) and
jobs/ (background work) on top of bot/.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from typing import Any

import click

from bot.db.migrate import upgrade_to_head
from tagbot.commands.context import CliContext, pass_ctx

log = logging.getLogger("tagbot")


def _run_gunicorn(ctx: CliContext, *, with_jobs: bool, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from bot.db import clock
    from bot.runtime import before_fork
    from handlers.app import create_app
    from jobs.background import Background

    settings = ctx.settings
    holder: dict[str, Any] = {}

    class TagbotServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.server.host}:{settings.server.port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", None)
            # The master kills a worker this long after SIGTERM: room for the requests in
            # flight and the background's own bounded stop ([server] stop_seconds).
            self.cfg.set("graceful_timeout", math.ceil(settings.server.stop_seconds) + 10)
            # gunicorn 25.1+ opens a control socket for `gunicornc` under $XDG_RUNTIME_DIR
            # or ~/.gunicorn: one path per user, shared by every server on the machine, and
            # outside the deployment's folders. Nothing here uses it: stop and reload go
            # through signals.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("pre_fork", _pre_fork)
            self.cfg.set("post_worker_init", _post_worker_init)
            self.cfg.set("worker_exit", _worker_exit)

        def load(self) -> Any:
            app = create_app(settings)
            holder["runtime"] = app.extensions["tagbot"]
            return app

    def _pre_fork(_server: Any, _worker: Any) -> None:
        before_fork()

    def _post_worker_init(_worker: Any) -> None:
        rt = holder["runtime"]
        clock.follow(rt.db, rt.stopping)  # before any claim: leases and deadlines by one clock
        if not with_jobs:
            return
        bg = Background(rt)
        bg.start_workers()
        bg.start_scheduler()
        holder["background"] = bg

    def _worker_exit(_server: Any, _worker: Any) -> None:
        # Stop and join the job threads, then close what they used (the re-tier's DuckDB
        # engines, the database pool) while the interpreter is still whole.
        bg = holder.get("background")
        clean = bg.stop() if bg is not None else True
        rt = holder.get("runtime")
        if rt is not None and clean:  # not under a thread still running past the bound
            rt.close()

    # Close the migration's connections before the fork: workers open their own.
    ctx.runtime.db.dispose()
    TagbotServer().run()


@click.command()
@click.option(
    "--no-jobs",
    is_flag=True,
    help="Serve HTTP only; run `tagbot worker` and `tagbot scheduler` apart.",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Processes (default 1 with jobs; [server] workers with --no-jobs).",
)
@click.option("--threads", type=int, default=8, show_default=True, help="Threads per web process.")
@pass_ctx
def serve(ctx: CliContext, no_jobs: bool, workers: int | None, threads: int) -> None:
    """Serve the callback URL, /api and /healthz, /metrics (with the background jobs by default)."""
    from bot.runtime import configure_logging

    configure_logging(ctx.settings.app.log_level, ctx.settings)
    upgrade_to_head(ctx.schema_runtime().db.engine)
    # Every process runs the web app and, unless --no-jobs, the workers: each processes
    # the callbacks it acknowledged itself, so the wake-up goes straight from the request
    # to a worker thread; the scheduler runs in whichever process holds its lease.
    n = workers or (ctx.settings.server.workers if no_jobs else 1)
    click.echo(
        f"tagbot serving on http://{ctx.settings.server.host}:{ctx.settings.server.port}"
        f" ({n} process(es), jobs {'off' if no_jobs else 'on'})"
    )
    _run_gunicorn(ctx, with_jobs=not no_jobs, workers=n, threads=threads)


def _run_until_signal(rt: Any, start: Any) -> None:
    from bot.db import clock

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    clock.follow(rt.db, rt.stopping)  # before any claim: leases and deadlines by one clock
    bg = start()
    done.wait()
    if bg.stop():  # bounded by [server] stop_seconds
        rt.close()  # not under a thread still running past the bound


@click.command()
@pass_ctx
def worker(ctx: CliContext) -> None:
    """Process the callback inbox and the WeCom outbox (no web, no schedule)."""
    from jobs.background import Background

    rt = ctx.schema_runtime()
    upgrade_to_head(rt.db.engine)

    def start() -> Background:
        bg = Background(rt)
        bg.start_workers()
        return bg

    click.echo("tagbot worker running; Ctrl-C to stop")
    _run_until_signal(rt, start)


@click.command()
@pass_ctx
def scheduler(ctx: CliContext) -> None:
    """Run the scheduled jobs: the daily sync, the nightly re-tier, scheduled campaigns (one leader)."""
    from jobs.background import Background

    rt = ctx.schema_runtime()
    upgrade_to_head(rt.db.engine)

    def start() -> Background:
        bg = Background(rt)
        bg.start_scheduler()
        return bg

    click.echo("tagbot scheduler running; Ctrl-C to stop")
    _run_until_signal(rt, start)
