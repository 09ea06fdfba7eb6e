"""greetkit gc"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option, out_option, store_dir


@click.command()
@config_option
@out_option
@click.option("-n", "--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--keep", type=click.IntRange(min=1), default=1, show_default=True,
              help="Keep the newest N published versions (and their clips).")
@click.option("--pin", type=click.IntRange(min=1), default=None,
              help="Also keep this version (one that workers are pinned to).")
def command(config: Path, out: Path | None, dry_run: bool, keep: int, pin: int | None) -> None:
    """Delete clip files no version worth keeping names.

    Kept: the current version, the newest --keep versions and the --pin version, with every
    clip they name. Builds never delete old clips, because a running worker may still play
    them. During a rolling deploy keep at least the versions old and new workers run.
    """
    from greetkit.store import Store

    store = Store(store_dir(config, out))
    with store.lock():
        store.clean_temp()
        removed = store.gc(dry_run=dry_run, keep=keep, pin=pin)
    verb = "would delete" if dry_run else "deleted"
    for p in removed:
        click.echo(f"{verb} {p}")
    click.echo(f"{verb} {len(removed)} files")
