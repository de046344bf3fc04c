"""A simulator of the test corp with options the shared fixture does not set."""

from __future__ import annotations

from typing import Any

from tests.support.corp import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN
from wecom_sim import Simulator


def start_simulator(**options: Any) -> Simulator:
    """Start a simulator with the test corp's credentials and `options` (stop it after)."""
    return Simulator(
        corp_id=CORP_ID,
        secret=SECRET,
        agent_id=AGENT_ID,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        **options,
    ).start()
