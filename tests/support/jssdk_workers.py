"""A process that signs sidebar pages on command: one of the two in the ticket-sharing test.

Run with multiprocessing's spawn context: a fresh interpreter with its own Database and
WeComClient, as a second `tagbot serve` process would have, sharing only the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from multiprocessing.connection import Connection

from bot.config import settings_from_mapping
from bot.db import Database
from bot.sidebar.signing import sign_page
from bot.wecom.client import WeComClient
from tests.support.corp import base_config


def sign_on_command(db_url: str, api_base: str, conn: Connection) -> None:
    """Sign the pages each command names at its time; answer (corp, agent) signatures."""
    settings = settings_from_mapping(base_config(db_url, api_base=api_base), environ={})
    db = Database(db_url)
    client = WeComClient(settings.wecom, settings.limits, db=db)
    try:
        while True:
            command = conn.recv()
            if command is None:
                break
            epoch, urls = command
            now = datetime.fromtimestamp(epoch, UTC)
            answers = []
            for url in urls:
                signed = sign_page(url, db=db, wecom=client, now=now)
                answers.append((url, signed.corp, signed.agent))
            conn.send(answers)
    except Exception as exc:  # report it to the test instead of hanging it
        conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
        db.dispose()
