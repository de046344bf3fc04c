"""`tagbot init-db` and `tagbot check-config`."""

from __future__ import annotations

import click

from bot.config import ENV_ONLY, Settings, channel_example_values, load_settings
from bot.db import Database
from bot.db.migrate import (
    DatabaseNotReadyError,
    current_revision,
    require_file,
    require_schema,
    upgrade_to_head,
)
from bot.errors import ConfigError
from tagbot.commands.context import CliContext, pass_ctx


@click.command("init-db")
@pass_ctx
def init_db(ctx: CliContext) -> None:
    """Create or upgrade the database schema to the newest version (safe to repeat)."""
    db = ctx.schema_runtime().db
    before = current_revision(db.engine)
    upgrade_to_head(db.engine)
    after = current_revision(db.engine)
    if before == after:
        click.echo(
            f"数据库已是最新版本 / database already at {after} ({db.engine.url.get_backend_name()})"
        )
    else:
        click.echo(f"数据库已升级 / database upgraded {before or '(empty)'} -> {after}")


def _channel_checks(settings: Settings) -> tuple[list[str], list[str]]:
    """Check `[[channels]]` against the database's last sync: (problems, warnings).

    Reads only: a missing SQLite file is not created, a missing schema is not made.
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from bot.config_check import NOT_CHECKED, channel_findings
    from bot.groups.names import RULES_NOT_CHECKED, reads_groups

    if not settings.channels and not reads_groups(settings):
        return [], channel_example_values(settings)
    # What the warning says is not checked when the database cannot be read.
    not_checked = NOT_CHECKED if settings.channels else RULES_NOT_CHECKED
    try:
        require_file(settings.database.url)
        db = Database(settings.database.url)
        try:
            require_schema(db)
            with db.read() as session:
                found = channel_findings(settings, session=session)
        finally:
            db.dispose()
    except DatabaseNotReadyError:
        return [], [
            *channel_example_values(settings),
            not_checked + "run `tagbot init-db`, then `tagbot sync`",
        ]
    except (OperationalError, ProgrammingError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return [], [
            *channel_example_values(settings),
            not_checked + f"cannot use the database: {reason}",
        ]
    return found.problems, found.warnings


@click.command("check-config")
@pass_ctx
def check_config(ctx: CliContext) -> None:
    """Validate the config file and report every problem by its key."""
    try:
        settings = load_settings(ctx.config_path)
    except ConfigError as exc:
        # Each problem names its source: the file or a TAGBOT_* variable.
        _report(exc.problems)
        raise SystemExit(2) from None  # the same code as any command refused a bad config
    problems, warnings = _channel_checks(settings)
    if problems:
        _report(problems)
        _warn(warnings)
        raise SystemExit(2)
    w = settings.wecom
    where = "环境变量 / the environment" if str(ctx.config_path) == ENV_ONLY else ctx.config_path
    click.echo(f"配置有效 / config OK: {where}")
    click.echo(f"  corp_id={w.corp_id} agent_id={w.agent_id} api_base={w.api_base}")
    click.echo(f"  secret={w.secret} token={w.token} encoding_aes_key={w.encoding_aes_key}")
    click.echo(f"  database={settings.database.url.split('@')[-1]}")
    click.echo(
        f"  channels={len(settings.channels)} tier dimensions={len(settings.tiering.dimensions)}"
        f" campaigns={len(settings.outreach.campaigns)} staff display names={len(settings.staff)}"
    )
    _warn(warnings)


def _warn(warnings: list[str]) -> None:
    if warnings:
        click.echo(f"注意 / {len(warnings)} warning(s):", err=True)
        for warning in warnings:
            click.echo(f"  ! {warning}", err=True)


def _report(problems: list[str]) -> None:
    click.echo(f"配置有误 / {len(problems)} problem(s):", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
