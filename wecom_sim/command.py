"""`tagbot simulator`: run the fake WeCom in the foreground until Ctrl-C."""

from __future__ import annotations

import threading

import click

from wecom_sim.server import Simulator

DEFAULT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TAGBOT_SIMULATOR_HOST")
@click.option("--port", default=8900, show_default=True, type=int, envvar="TAGBOT_SIMULATOR_PORT")
@click.option(
    "--callback-url",
    default=None,
    envvar="TAGBOT_SIMULATOR_CALLBACK_URL",
    help="The bot's /wecom/callback URL, where events are posted.",
)
@click.option(
    "--corp-id", default="wwsimulatorcorp01", show_default=True, envvar="TAGBOT_WECOM__CORP_ID"
)
@click.option(
    "--secret", default="simulator-secret", show_default=True, envvar="TAGBOT_WECOM__SECRET"
)
@click.option(
    "--agent-id", default=1000002, show_default=True, type=int, envvar="TAGBOT_WECOM__AGENT_ID"
)
@click.option("--token", default="simulatorToken", show_default=True, envvar="TAGBOT_WECOM__TOKEN")
@click.option(
    "--aes-key",
    default=DEFAULT_AES_KEY,
    show_default=True,
    envvar="TAGBOT_WECOM__ENCODING_AES_KEY",
    help="EncodingAESKey, 43 characters.",
)
def simulator_command(
    host: str,
    port: int,
    callback_url: str | None,
    corp_id: str,
    secret: str,
    agent_id: int,
    token: str,
    aes_key: str,
) -> None:
    """Run the WeCom simulator until Ctrl-C."""
    if len(aes_key) != 43:
        raise click.BadParameter("must be 43 characters", param_hint="--aes-key")
    sim = Simulator(
        corp_id=corp_id,
        secret=secret,
        agent_id=agent_id,
        token=token,
        encoding_aes_key=aes_key,
        callback_url=callback_url,
    )
    try:
        sim.start(host=host, port=port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    click.echo(f"WeCom simulator listening on {sim.url}")
    click.echo(f"  api_base:     {sim.api_base}")
    click.echo(f"  web_login_url: {sim.web_login_url}")
    click.echo(f"  control API:  {sim.url}/control/")
    click.echo(f"  callback_url: {callback_url or '(none; PUT /control/callback_url)'}")
    click.echo("Press Ctrl-C to stop.")
    try:
        threading.Event().wait()  # the server runs on its own thread; wait for Ctrl-C
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        sim.stop()
