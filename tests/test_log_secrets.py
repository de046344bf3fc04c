"""No secret reaches the log: a real `tagbot sync` against the simulator at every level."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.logredact import RedactingFilter, redact
from tagbot.cli import main
from tests.support.corp import ADMIN_TOKEN, AES_KEY, SECRET, TOKEN, base_config


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def _write_config(path: Path, cfg: dict[str, Any]) -> Path:
    sections = [
        f"[{name}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in values.items())
        for name, values in cfg.items()
    ]
    path.write_text("\n".join(sections), encoding="utf-8")
    return path


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_sync_logs_no_secret_at_any_level(
    tmp_path: Path, db_url: str, simulator: Any, capfd: pytest.CaptureFixture[str], level: str
) -> None:
    simulator.seed(staff=2, customers_per_staff=2, tag_groups={"客户等级": ["VIP"]})
    cfg = base_config(db_url, simulator.api_base)
    cfg["app"] = {"log_level": level}
    config = _write_config(tmp_path / "config.toml", cfg)
    try:
        assert main(["--config", str(config), "sync"]) == 0
    finally:
        logging.getLogger().handlers.clear()  # the CLI's handler writes to this test's stderr
    out, err = capfd.readouterr()
    with simulator.state.lock:
        issued = list(simulator.state.tokens)
    assert issued, "the sync fetched no access token"
    if level != "WARNING":
        assert "sync done" in err  # the log was produced and captured
    for secret in [SECRET, TOKEN, AES_KEY, ADMIN_TOKEN, *issued]:
        assert secret not in out
        assert secret not in err


def test_filter_masks_settings_secrets_and_url_tokens_in_messages_and_tracebacks() -> None:
    record_filter = RedactingFilter([SECRET, ADMIN_TOKEN])
    try:
        raise RuntimeError(f"boom with {ADMIN_TOKEN}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        "GET %s",
        (f"/cgi-bin/gettoken?corpid=ww1&corpsecret={SECRET}&x=1 access_token=TOK123&y",),
        exc_info,
    )
    assert record_filter.filter(record)
    text = record.getMessage() + (record.exc_text or "")
    for hidden in (SECRET, ADMIN_TOKEN, "TOK123"):
        assert hidden not in text
    assert "corpsecret=***&x=1" in text
    assert redact("access_token=abc&debug=1") == "access_token=***&debug=1"
