"""Access to the process runtime from inside a request."""

from __future__ import annotations

from collections.abc import Sequence

from flask import current_app

from bot.config import DimensionSettings
from bot.rules import Dimension, load_dimensions
from bot.runtime import Runtime


def runtime() -> Runtime:
    """Return the Runtime bound to the current app."""
    rt: Runtime = current_app.extensions["tagbot"]
    return rt


class LoadedDimensions:
    """The configured dimensions, parsed once per process (parsing them all takes ~80 ms).

    `parses` counts the parses (tests: a page read per request must not parse again).
    """

    def __init__(self) -> None:
        self._source: object = None
        self._dims: tuple[Dimension, ...] = ()
        self.parses = 0

    def get(self, source: Sequence[DimensionSettings]) -> tuple[Dimension, ...]:
        if self._source is not source:  # settings replaced: parse the new ones
            self._dims = load_dimensions(source)
            self._source = source
            self.parses += 1
        return self._dims


def dimensions() -> tuple[Dimension, ...]:
    """Return the configured dimensions, parsed (once per process and settings)."""
    rt = runtime()
    return rt.local(LoadedDimensions).get(rt.settings.tiering.dimensions)
