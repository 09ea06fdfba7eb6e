"""greetkit verify"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option, out_option, store_dir


@click.command()
@config_option
@out_option
def command(config: Path, out: Path | None) -> None:
    """Check every stored clip against the manifest (exit 1 on any mismatch).

    Each clip file (and each sample-rate variant) must exist, have the recorded size and
    sha256, and be a WAV laid out as the manifest says. Every problem is named.
    """
    from greetkit.errors import VerifyError
    from greetkit.store import Store

    store = Store(store_dir(config, out))
    problems = store.verify()
    if problems:
        raise VerifyError(problems)
    manifest = store.manifest()
    count = len(manifest.clips) if manifest else 0
    click.echo(f"ok: {count} clips match manifest version {manifest.version if manifest else 0}")
