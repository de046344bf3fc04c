"""The sidebar in headless Chromium: a phone-sized WeCom webview with the JS-SDK stand-in.

The stand-in (wecom_sim/jssdk.py) posts each `ww` call to the simulator. The sidebar's CSP
allows connections to its own origin only (the real SDK talks to the client, not the
network), so here the stand-in is built for the bot's origin and its calls are forwarded
to the simulator by the browser's router: the page runs under its real CSP.
"""

from __future__ import annotations

import urllib.request
from typing import Any
from urllib.parse import urlsplit

from tests.support.console_browser import Served, Tab
from tests.support.jssdk import VENDORED_JSSDK

WEBVIEW = {"width": 360, "height": 720}  # the desktop client's pane; phones are about as wide


def use_standin_same_origin(context: Any, sim_url: str, bot_url: str) -> None:
    """Serve the stand-in for the vendored SDK, calling back to the bot's origin."""
    host = urlsplit(bot_url).netloc

    def sdk(route: Any) -> None:
        request = urllib.request.Request(f"{sim_url}/jssdk/standin.js", headers={"Host": host})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        route.fulfill(status=200, content_type="text/javascript", body=body)

    def invoke(route: Any) -> None:
        route.fulfill(response=route.fetch(url=f"{sim_url}/jssdk/invoke"))

    context.route(f"**{VENDORED_JSSDK}", sdk)
    context.route(f"{bot_url}/jssdk/invoke", invoke)


def webview_tab(browser: Any, served: Served) -> tuple[Any, Tab]:
    """Open a fresh WeCom webview (no cookies) with the stand-in; return its context and tab."""
    context = browser.new_context(viewport=WEBVIEW, locale="zh-CN", is_mobile=True)
    use_standin_same_origin(context, served.sim.url, served.url)
    page = context.new_page()
    found = Tab(page)

    def on_console(message: Any) -> None:
        # A 403 fragment is logged as a failed resource: an answer, not a page error.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            found.errors.append(message.text)

    def on_dialog(dialog: Any) -> None:
        found.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda e: found.errors.append(str(e)))
    page.on("dialog", on_dialog)
    return context, found
