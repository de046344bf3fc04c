"""Headless Chromium for the console's end-to-end tests: Debian's browser through Playwright.

`make test` runs scripts/ensure-browser.sh first, which installs `chromium` and a CJK font
when they are missing; where that is impossible the browser tests skip with the reason.
Never `playwright install`: it downloads a browser build of its own.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]


def unavailable() -> str | None:
    """Say why no browser test can run here, or None when one can."""
    if not CHROMIUM.exists():
        return (
            f"no {CHROMIUM}: scripts/ensure-browser.sh could not install Debian's chromium "
            "here (it needs apt-get and root)"
        )
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    return None


def artifacts_dir() -> Path:
    """Where screenshots go: $TAGBOT_ARTIFACTS, else tmp/artifacts in the checkout."""
    folder = Path(os.environ.get("TAGBOT_ARTIFACTS") or ROOT / "tmp" / "artifacts") / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
