"""greetkit pull"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._transfer import concurrency_option, progress_printer


@click.command()
@click.argument("url")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("greetings"),
              show_default=True, help="The local store to pull into.")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="The published version to pull [default: the current one].")
@concurrency_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def command(url: str, out: Path, version: int | None, concurrency: int, quiet: bool) -> None:
    """Download a published bank version into a local store and make it current there.

    Only clips the store lacks are fetched; each is checked against its sha256 and written
    atomically, and the manifest goes last, so a pull killed at any moment leaves the old
    bank playable and running it again finishes. URL is any location 'greetkit publish'
    takes, or the read-only https:// address of a bucket or CDN serving it.
    """
    from greetkit.remote import Remote
    from greetkit.store import Store

    remote = Remote.open(url, concurrency=concurrency)
    result = remote.pull(Store(out), version=version,
                         progress=None if quiet else progress_printer("download"))
    if not result.changed:
        click.echo(f"{out}: already at version {result.version} ({result.requests} "
                   f"requests, {result.seconds:.2f}s)")
        return
    click.echo(f"pulled {url} version {result.version} into {out}: "
               f"{len(result.transferred)} of {result.clips} clip files downloaded "
               f"({result.bytes / 1e6:.1f} MB), {result.requests} requests in "
               f"{result.seconds:.1f}s")
