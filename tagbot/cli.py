"""`tagbot`: the command line. Errors end as one clear line and a non-zero exit."""

from __future__ import annotations

import importlib
import os
import sys

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.errors import ConfigError, TagbotError
from tagbot.commands.context import CliContext

# Each entry is "module:command"; feature modules add themselves here.
COMMANDS = [
    "tagbot.commands.setup:init_db",
    "tagbot.commands.setup:check_config",
    "tagbot.commands.serve:serve",
    "tagbot.commands.serve:worker",
    "tagbot.commands.serve:scheduler",
    "wecom_sim.command:simulator_command",
    "tagbot.commands.demo:demo",
    "tagbot.commands.imports:import_command",
    "tagbot.commands.sync:sync_command",
    "tagbot.commands.retier:retier_command",
    "tagbot.commands.push:push_command",
    "tagbot.commands.customers:customer_group",
    "tagbot.commands.staff:staff_group",
    "tagbot.commands.channel:channel_group",
    "tagbot.commands.deadletters:inbox_group",
    "tagbot.commands.outreach:outreach_group",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="TAGBOT_CONFIG",
    help="Config file (default $TAGBOT_CONFIG, else ./config.toml); `env`: no file, every key"
    " from TAGBOT_SECTION__KEY variables.",
)
@click.pass_context
def cli(click_ctx: click.Context, config_path: str | None) -> None:
    """wecom-tagbot: channel live codes that tag and welcome who scans, data import, WeCom sync."""
    shared = CliContext(config_path)
    if isinstance(click_ctx.obj, list):  # main's: it names the database in errors
        click_ctx.obj.append(shared)
    click_ctx.obj = shared
    click_ctx.call_on_close(click_ctx.obj.close)


def _load_commands() -> None:
    for spec in COMMANDS:
        module_name, _, attr = spec.partition(":")
        module = importlib.import_module(module_name)
        cli.add_command(getattr(module, attr))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn our errors into one line on stderr and an exit code."""
    _load_commands()
    built: list[CliContext] = []
    try:
        cli.main(args=argv, prog_name="tagbot", standalone_mode=False, obj=built)
    except click.exceptions.Abort:
        click.echo("已取消 / aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ConfigError as exc:
        click.echo(f"error: configuration has {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        click.echo("run `tagbot check-config` after fixing them", err=True)
        return 2
    except TagbotError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except (OperationalError, ProgrammingError) as exc:  # down, nowhere, or tables missing
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        label = built[0].database_label() if built else None
        where = f" ({label})" if label else ""
        hint = " — 请运行 / run `tagbot init-db`" if _missing_table(reason) else ""
        if _disk_full(reason):
            hint = f" — {DISK_FULL_HINT}"
        click.echo(f"error: cannot use the database: {reason}{where}{hint}", err=True)
        return 1
    except Exception as exc:  # a bug or an environment failure: one line unless debugging
        if os.environ.get("TAGBOT_DEBUG"):
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        click.echo("(set TAGBOT_DEBUG=1 to see the traceback)", err=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


# What was cut off is rolled back whole: an import keeps the batches it committed (running it
# again completes it, unchanged rows are skipped), a re-tier records nothing or whole chunks.
DISK_FULL_HINT = (
    "磁盘已满：未完成的写入已撤销，释放空间后重新运行同一命令即可 / "
    "disk full: the unfinished write was rolled back; free space and run the same command again"
)


def _disk_full(reason: str) -> bool:
    """Tell whether a database error means the disk is full (SQLite, PostgreSQL)."""
    return "database or disk is full" in reason or "No space left on device" in reason


def _missing_table(reason: str) -> bool:
    """Tell whether a database error means the schema is missing or older than the code."""
    # SQLite: "no such table: x"; PostgreSQL: 'relation "x" does not exist'.
    return "no such table" in reason or ("relation" in reason and "does not exist" in reason)


if __name__ == "__main__":
    sys.exit(main())
