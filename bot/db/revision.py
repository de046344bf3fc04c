"""Developer helper: autogenerate a migration from the models (`make migration MSG=...`)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from bot.db.migrate import alembic_config, upgrade_to_head
from bot.db.session import make_engine


def main() -> None:
    message = " ".join(sys.argv[1:]) or "schema change"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'rev.db'}"
        engine = make_engine(url)
        upgrade_to_head(engine)
        cfg = alembic_config(url)
        command.revision(cfg, message=message, autogenerate=True)
        engine.dispose()


if __name__ == "__main__":
    main()
