"""What every command shares: the config path, settings and runtime, built on first use."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import click

from bot.config import Settings, load_settings, resolve_config_path
from bot.runtime import Runtime, configure_logging


class CliContext:
    """Lazily load settings so `tagbot --help` works without a config file."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path: Path = resolve_config_path(config_path)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def runtime(self) -> Runtime:
        configure_logging(self.settings.app.log_level, self.settings)
        return Runtime(self.settings)

    def close(self) -> None:
        """Release the runtime's connections if a command built it."""
        if "runtime" in self.__dict__:
            self.runtime.close()


pass_ctx = click.make_pass_decorator(CliContext)
