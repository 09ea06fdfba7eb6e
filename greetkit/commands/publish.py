"""greetkit publish"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option, out_option, store_dir
from greetkit.commands._transfer import concurrency_option, progress_printer


@click.command()
@click.argument("url")
@config_option
@out_option
@concurrency_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def command(url: str, config: Path, out: Path | None, concurrency: int, quiet: bool) -> None:
    """Upload the built bank to URL as a new version.

    URL is s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir.
    Clips the remote lacks are uploaded (never overwritten), then the version's manifest
    (manifests/<N>.json, never overwritten), then manifest.json, the current pointer: workers
    see the previous version or the new one, never a mix. Credentials come from the standard
    environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true; GOOGLE_*; AZURE_*).
    """
    from greetkit.remote import Remote
    from greetkit.store import Store

    store = Store(store_dir(config, out))
    remote = Remote.open(url, concurrency=concurrency)
    result = remote.publish(store, progress=None if quiet else progress_printer("upload"))
    click.echo(f"published {url} version {result.version}: {len(result.transferred)} of "
               f"{result.clips} clip files uploaded ({result.bytes / 1e6:.1f} MB), "
               f"{result.requests} requests in {result.seconds:.1f}s")
