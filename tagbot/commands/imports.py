"""`tagbot import orders|events|profiles FILE`: load a .csv or .xlsx file.

Exit status: 0 when the file was read, even if some rows were rejected (they are
counted on screen and written to the rejects file with a reason each, so a scheduled
import of a mostly-good file does not page anyone); 1 when the file itself can't be
imported (missing, unreadable encoding, missing columns), in which case nothing is written.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import click
from tqdm import tqdm

from bot.ingest.docs import help_text
from bot.ingest.rows import KINDS, Kind
from bot.ingest.service import IngestResult, import_file
from tagbot.commands.context import CliContext, pass_ctx

log = logging.getLogger("tagbot.import")


def default_rejects_path(source: Path) -> Path:
    """Put the rejects beside the input: orders.csv -> orders.rejects.csv."""
    return source.with_name(f"{source.stem}.rejects.csv")


def write_rejects(result: IngestResult, path: Path) -> None:
    """Write refused rows with their original values, the field at fault and the reason."""
    columns: list[str] = []
    for rejected in result.rejected:
        for name in rejected.raw:
            if name not in columns:
                columns.append(name)
    # utf-8-sig so Excel shows the Chinese reasons instead of mojibake.
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["row", *columns, "field", "reason"])
        for rejected in result.rejected:
            raw = rejected.raw
            values = ["" if raw.get(c) is None else str(raw.get(c)) for c in columns]
            error = rejected.error
            writer.writerow([error.index, *values, error.field, error.reason])


@click.command("import", epilog=help_text())
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=(
        "Where to write rejected rows with reasons "
        "(default: beside FILE, named after it: orders.csv -> orders.rejects.csv)."
    ),
)
@pass_ctx
def import_command(ctx: CliContext, kind: Kind, file: Path, rejects_path: Path | None) -> None:
    """Import orders, interactions or profiles from a .csv or .xlsx file (idempotent by id).

    A .csv may be UTF-8 (with or without BOM) or GBK; an .xlsx is read from its first
    sheet. Rejected rows are written with a reason to the rejects file, beside FILE and
    named after it (orders.csv -> orders.rejects.csv; `row` is the line or sheet row
    number as Excel shows it). Exit status 0 even when some rows were
    rejected; 1 when the file itself can't be read, and then nothing is written.
    """
    if rejects_path is not None and not rejects_path.parent.is_dir():
        # Checked first: rows are committed before the rejects are written.
        raise click.BadParameter(
            f"目录不存在 / no such directory: {rejects_path.parent}", param_hint="--rejects"
        )
    rt = ctx.runtime
    started = time.monotonic()
    bar: tqdm[None] | None = None

    def on_open(total: int | None, warnings: list[str]) -> None:
        nonlocal bar
        for warning in warnings:
            click.echo(f"注意 / warning: {warning}", err=True)
        bar = tqdm(total=total, unit="行", desc=f"导入 {file.name}", file=sys.stderr, leave=False)

    def on_progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    try:
        result = import_file(
            kind, file, db=rt.db, tz=rt.settings.tz, on_open=on_open, on_progress=on_progress
        )
    finally:
        if bar is not None:
            bar.close()
    seconds = time.monotonic() - started
    log.info(
        "import %s %s: %d rows, %d inserted, %d updated, %d unchanged, %d rejected in %.1fs",
        kind,
        file,
        result.rows,
        result.inserted,
        result.updated,
        result.unchanged,
        len(result.rejected),
        seconds,
    )
    click.echo(f"{file.name}: 共 {result.rows} 行，用时 {seconds:.1f} 秒")
    click.echo(f"  新增 inserted:   {result.inserted}")
    click.echo(f"  更新 updated:    {result.updated}")
    click.echo(f"  未变 unchanged:  {result.unchanged}")
    click.echo(f"  拒绝 rejected:   {len(result.rejected)}")
    if result.rejected:
        target = rejects_path or default_rejects_path(file)
        try:
            write_rejects(result, target)
        except OSError as exc:
            # The good rows are stored already; keep the refused ones somewhere.
            fd, name = tempfile.mkstemp(prefix=f"{file.stem}.rejects.", suffix=".csv")
            os.close(fd)
            click.echo(f"注意 / warning: 无法写入 {target}（{exc.strerror or exc}）", err=True)
            target = Path(name)
            write_rejects(result, target)
        click.echo(f"  被拒绝的行及原因已写入 / rejects written to: {target}")
