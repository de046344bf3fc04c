"""`tagbot init-db` and `tagbot check-config`."""

from __future__ import annotations

import click

from bot.config import load_settings
from bot.db.migrate import current_revision, upgrade_to_head
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


@click.command("check-config")
@pass_ctx
def check_config(ctx: CliContext) -> None:
    """Validate the config file and report every problem by its key."""
    try:
        settings = load_settings(ctx.config_path)
    except ConfigError as exc:
        # Each problem names its source: the file or a TAGBOT_* variable.
        click.echo(f"配置有误 / {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(2) from None  # the same code as any command refused a bad config
    w = settings.wecom
    click.echo(f"配置有效 / config OK: {ctx.config_path}")
    click.echo(f"  corp_id={w.corp_id} agent_id={w.agent_id} api_base={w.api_base}")
    click.echo(f"  secret={w.secret} token={w.token} encoding_aes_key={w.encoding_aes_key}")
    click.echo(f"  database={settings.database.url.split('@')[-1]}")
    click.echo(
        f"  channels={len(settings.channels)} tier dimensions={len(settings.tiering.dimensions)}"
        f" campaigns={len(settings.outreach.campaigns)} staff display names={len(settings.staff)}"
    )
