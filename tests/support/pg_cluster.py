"""A throwaway PostgreSQL cluster on a spare port, to crash and restart at will.

`initdb` runs as the postgres user into a temporary directory; `crash` is
`pg_ctl -m immediate stop` (the server processes quit without a checkpoint, as on a
power cut of the server alone), `start` runs crash recovery. Used where a test must take
the database itself down, which the shared server on 5432 must never be.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support.processes import free_port
from tests.support.waiting import wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


def unavailable() -> str | None:
    """Return why a throwaway cluster cannot be made here, or None when it can."""
    if not (PG_BIN / "initdb").exists():
        return f"no initdb at {PG_BIN} (Debian's postgresql-15 package)"
    if shutil.which("runuser") is None:
        return "no runuser to run initdb as the postgres user"
    try:
        import pwd

        pwd.getpwnam(USER)
    except KeyError:
        return f"no {USER} user to own the cluster"
    if os.geteuid() != 0:
        return "initdb as the postgres user needs root (runuser)"
    return None


class Cluster:
    """One cluster: its directory, port and URL; `crash` and `start` it; `remove` when done."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tagbot-pgcrash-"))
        shutil.chown(self.dir, USER, USER)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", USER, "--", str(PG_BIN / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self) -> None:
        """Start the server (crash recovery first, after `crash`) and wait until it answers."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options,
            "-w", "start",
        )  # fmt: skip
        wait_for(self.answers, timeout=60, what="the throwaway PostgreSQL to answer")

    def crash(self) -> None:
        """Kill the server at once: no checkpoint, every connection cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def answers(self) -> bool:
        try:
            dsn = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def remove(self) -> None:
        """Stop the server if it runs and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):  # already down
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
