"""The test corp: its credentials, the official crypto vectors and the smallest valid config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# The worked example of the official encryption page (doc 91144), copied from
# ../shared/vectors so the suite runs from a lone clone.
VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "wecom-doc-91144.json"

PG_URL = os.environ.get("TAGBOT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

CORP_ID = "wwtestcorp000001"
SECRET = "test-secret-of-the-self-built-app"
AGENT_ID = 1000002
TOKEN = "tagbotTestToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ADMIN_TOKEN = "test-admin-token-0123456789"


def base_config(db_url: str, api_base: str = "http://127.0.0.1:9/cgi-bin/") -> dict[str, Any]:
    """The smallest valid config, as a TOML-shaped dict tests can extend."""
    return {
        "wecom": {
            "corp_id": CORP_ID,
            "secret": SECRET,
            "agent_id": AGENT_ID,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "api_base": api_base,
            "timeout_seconds": 2.0,
        },
        "database": {"url": db_url},
        "server": {"host": "127.0.0.1", "port": 0, "admin_token": ADMIN_TOKEN},
    }
