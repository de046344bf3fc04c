"""What every command shares: the config path, settings and runtime, built on first use."""

from __future__ import annotations

import logging
import sys
from functools import cached_property
from pathlib import Path

import click
from tqdm import tqdm

from bot.config import Settings, load_settings, resolve_config_path
from bot.db.migrate import require_file, require_schema
from bot.db.session import database_label
from bot.runtime import Runtime, configure_logging


class CliContext:
    """Lazily load settings so `tagbot --help` works without a config file."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path: Path = resolve_config_path(config_path)
        self._creates_schema = False

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def runtime(self) -> Runtime:
        """The runtime on a database `tagbot init-db` has set up (else one clear error)."""
        configure_logging(self.settings.app.log_level, self.settings)
        keep_logs_above_bars()
        if not self._creates_schema:
            require_file(self.settings.database.url)  # before connecting creates an empty one
        rt = Runtime(self.settings)
        if not self._creates_schema:
            try:
                require_schema(rt.db)
            except BaseException:
                rt.close()
                raise
        return rt

    def schema_runtime(self) -> Runtime:
        """The runtime for a command that creates or upgrades the schema itself."""
        self._creates_schema = True
        return self.runtime

    def database_label(self) -> str | None:
        """Name the configured database (file or URL without password), once settings loaded."""
        if "settings" not in self.__dict__:
            return None
        return database_label(self.settings.database.url)

    def close(self) -> None:
        """Release the runtime's connections if a command built it."""
        if "runtime" in self.__dict__:
            self.runtime.close()


class _AboveBars(logging.Handler):
    """Write records through tqdm while a progress bar is shown, else as `inner` does.

    tqdm.write clears the bar, writes the line and draws the bar again below it, so a log
    line never runs into the bar on stderr.
    """

    def __init__(self, inner: logging.Handler) -> None:
        super().__init__(inner.level)
        self.inner = inner
        self.setFormatter(inner.formatter)
        for f in inner.filters:  # secrets stay masked
            self.addFilter(f)

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(tqdm, "_instances", None):  # no bar open: the plain handler
            self.inner.emit(record)
            return
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def keep_logs_above_bars() -> None:
    """Make the root logger's stderr output give way to progress bars (the CLI's)."""
    root = logging.getLogger()
    root.handlers = [
        _AboveBars(h) if isinstance(h, logging.StreamHandler) and h.stream is sys.stderr else h
        for h in root.handlers
    ]


pass_ctx = click.make_pass_decorator(CliContext)
