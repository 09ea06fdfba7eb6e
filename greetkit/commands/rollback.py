"""greetkit rollback"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option, out_option, store_dir


@click.command()
@click.argument("url", required=False)
@click.option("--to", "version", type=click.IntRange(min=1), required=True,
              help="The published version to make current.")
@config_option
@out_option
def command(url: str | None, version: int, config: Path, out: Path | None) -> None:
    """Make an earlier published version the current bank again, deleting nothing.

    Without URL, the local store (greetings/ beside the config, or --out) is rolled back;
    workers that load it pick the version up on their next load. With URL (s3://, gs://,
    az://, file://), the remote bank's current pointer moves; workers that pull without
    --version get that version. Versions pinned with GREETKIT_BANK_VERSION do not move.
    """
    if url is not None:
        from greetkit.remote import Remote

        manifest = Remote.open(url).rollback(version)
        click.echo(f"{url}: current version is now {manifest.version} "
                   f"({len(manifest.clips)} clips)")
        return
    from greetkit.store import Store

    store = Store(store_dir(config, out))
    with store.lock():
        manifest = store.rollback(version)
    click.echo(f"{store.root}: current version is now {manifest.version} "
               f"({len(manifest.clips)} clips)")
