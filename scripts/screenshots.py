"""Retake the README's console screenshots from the demo's own data.

Runs `tagbot demo --keep-running` (the simulator and the bot on the embedded defaults), signs
in to the console with the demo's admin token in Debian's Chromium, and writes
docs/screenshots/console-overview.png (概览) and console-customer.png (the customer the demo
lists first in its 高价值 tier, 分层与原因 at the top). Developers run it after a change to those pages:

    .venv/bin/python scripts/screenshots.py

The browser comes from scripts/ensure-browser.sh (`make test` runs it).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import FloatRect, ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
# The pages run to 4,600 (概览, twelve dimensions) and 8,000 px (a customer's twelve
# explanations): the README shows their tops, where an operator starts reading.
OVERVIEW_HEIGHT = 2300
CUSTOMER_HEIGHT = 1500
# A customer worth showing: one in the demo's top value tier, with orders behind the reasons.
SHOWCASE = "dimension=value&tier=高价值"
CONSOLE = re.compile(r"运营后台\s+(http://\S+/admin/)")
TOKEN = re.compile(r"管理令牌\s+(\S+)")


def _read_demo(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Read the demo's output until it prints the console's address; return it and the token."""
    assert proc.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        for key, pattern in (("console", CONSOLE), ("token", TOKEN)):
            m = pattern.search(line)
            if m and key not in found:
                found[key] = m.group(1)
        if "保持运行中" in line or time.monotonic() > deadline:
            break
    missing = {"console", "token"} - found.keys()
    if missing:
        raise SystemExit(f"the demo did not print {sorted(missing)}; is its output format changed?")
    return found["console"], found["token"]


def _shoot(page: Any, path: Path, height: int) -> None:
    clip: FloatRect = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}
    page.screenshot(path=str(path), full_page=True, clip=clip)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the demo")
    args = parser.parse_args()
    tagbot = Path(sys.executable).with_name("tagbot")
    with tempfile.TemporaryDirectory(prefix="tagbot-shots-") as work:
        proc = subprocess.Popen(
            [str(tagbot), "demo", "--keep-running", "--workdir", work],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            console, token = _read_demo(proc, args.timeout)
            args.out.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM)
                page = browser.new_page(viewport=VIEWPORT, locale="zh-CN")
                page.goto(console + "login")
                page.fill("#token", token)
                page.click("form button[type=submit]")
                page.wait_for_url(console)
                page.wait_for_load_state("networkidle")
                _shoot(page, args.out / "console-overview.png", OVERVIEW_HEIGHT)
                page.goto(f"{console}customers?{SHOWCASE}")
                link = page.locator("tbody a[href*='/admin/customers/']").first
                page.goto(console.removesuffix("/admin/") + (link.get_attribute("href") or ""))
                page.wait_for_load_state("networkidle")
                _shoot(page, args.out / "console-customer.png", CUSTOMER_HEIGHT)
                browser.close()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"wrote {args.out / 'console-overview.png'} and {args.out / 'console-customer.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
