"""Browser tests load the simulator's JS-SDK stand-in where a page asks for the vendored SDK.

The sidebar page loads the vendored `@wecom/jssdk` global build; in a test the same URL
answers with `GET <simulator>/jssdk/standin.js` (wecom_sim/jssdk.py), which checks the
page's signatures against the simulator's tickets and reports the chat `sim.open_chat` set.
"""

from __future__ import annotations

import urllib.request
from typing import Any

VENDORED_JSSDK = "/static/vendor/wecom-jssdk-2.4.4/wecom.global.prod.js"


def use_standin(page_or_context: Any, sim_url: str) -> None:
    """Make a Playwright page (or context) load the stand-in instead of the vendored SDK.

    The stand-in is fetched when the page asks for it, so `sim.outside_wecom()` or
    `sim.open_chat(...)` called before a load applies to that load.
    """

    def serve(route: Any) -> None:
        with urllib.request.urlopen(f"{sim_url}/jssdk/standin.js", timeout=10) as answer:
            body = answer.read()
        route.fulfill(status=200, content_type="text/javascript", body=body)

    page_or_context.route(f"**{VENDORED_JSSDK}", serve)
