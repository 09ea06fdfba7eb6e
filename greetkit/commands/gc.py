"""greetkit gc"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option, out_option, store_dir


@click.command()
@config_option
@out_option
@click.option("-n", "--dry-run", is_flag=True, help="Only list what would be deleted.")
def command(config: Path, out: Path | None, dry_run: bool) -> None:
    """Delete clip files no longer named by the manifest.

    Builds never delete old clips, because a running worker may still play them. Run gc once
    every worker has reloaded the current bank.
    """
    from greetkit.store import Store

    store = Store(store_dir(config, out))
    with store.lock():
        store.clean_temp()
        removed = store.gc(dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for p in removed:
        click.echo(f"{verb} {p}")
    click.echo(f"{verb} {len(removed)} files")
