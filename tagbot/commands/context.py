"""What every command shares: the config path, settings and runtime, built on first use."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import click

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


pass_ctx = click.make_pass_decorator(CliContext)
