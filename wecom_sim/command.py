"""`tagbot simulator`: run the fake WeCom in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType

import click

from wecom_sim.control_index import help_lines
from wecom_sim.server import Simulator

DEFAULT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
# The members config.example.toml names ([staff] and its channel), so it works as is.
EXAMPLE_STAFF = ("zhangsan:张三", "lisi:李四")


def wecom_block(sim: Simulator) -> str:
    """Return the [wecom] section of a config.toml that points the bot at `sim`."""
    values = {
        "corp_id": sim.corp_id,
        "secret": sim.state.secret,
        "agent_id": sim.agent_id,
        "token": sim.token,
        "encoding_aes_key": sim.encoding_aes_key,
        "api_base": sim.api_base,
    }
    lines = [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in values.items()]
    return "\n".join(["[wecom]", *lines])


@click.command(
    "simulator",
    epilog=help_lines(),
    help=(
        "Run the WeCom simulator until Ctrl-C. It starts with the members config.example.toml "
        f"names ({', '.join(m.replace(':', ' ') for m in EXAMPLE_STAFF)}; --staff to choose, "
        "--no-staff for none), no customers and no tags, and prints the [wecom] section to "
        "put in config.toml."
    ),
)
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
@click.option(
    "--staff",
    "staff",
    multiple=True,
    default=EXAMPLE_STAFF,
    show_default=True,
    metavar="USERID[:NAME]",
    help="A member with 客户联系 to start with (repeat for more).",
)
@click.option(
    "--no-staff", is_flag=True, help="Start with no members (add them over /control/staff)."
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
    staff: tuple[str, ...],
    no_staff: bool,
) -> None:
    """Run the WeCom simulator until Ctrl-C."""
    if len(aes_key) != 43:
        raise click.BadParameter("must be 43 characters", param_hint="--aes-key")
    members = [] if no_staff else [entry.partition(":")[::2] for entry in staff]
    if any(not userid.strip() for userid, _ in members):
        raise click.BadParameter("a userid is empty", param_hint="--staff")
    sim = Simulator(
        corp_id=corp_id,
        secret=secret,
        agent_id=agent_id,
        token=token,
        encoding_aes_key=aes_key,
        callback_url=callback_url,
    )
    for userid, name in members:
        sim.add_staff(userid.strip(), name.strip())
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before the banner, so whoever reads it may SIGTERM at once.
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        sim.start(host=host, port=port)
    except OSError as exc:
        signal.signal(signal.SIGTERM, previous)
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    click.echo(f"WeCom simulator listening on {sim.url}")
    click.echo(f"  api_base:     {sim.api_base}")
    click.echo(f"  web_login_url: {sim.web_login_url}")
    click.echo(f"  oauth_url:    {sim.oauth_url}")
    click.echo(f"  control API:  {sim.url}/control/  (GET it: every endpoint with a curl example)")
    click.echo(f"  callback_url: {callback_url or '(none; PUT /control/callback_url)'}")
    shown = ", ".join(f"{u} ({n})" if n else u for u, n in members)
    click.echo(f"  staff:        {shown or '(none; POST /control/staff, then tagbot sync)'}")
    click.echo("  customers:    none until one scans (POST /control/scan)")
    click.echo("Point the bot here: put this [wecom] section in config.toml")
    click.echo(wecom_block(sim))
    click.echo("Press Ctrl-C to stop.", nl=True)
    try:
        stop.wait()  # the server runs on its own thread; wait for Ctrl-C or SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        click.echo("stopping")
        sim.stop()
