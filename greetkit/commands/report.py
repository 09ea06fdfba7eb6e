"""greetkit report"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option, out_option, store_dir


@click.command()
@config_option
@out_option
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Where to write the page [default: <store>/index.html].")
def command(config: Path, out: Path | None, html: Path | None) -> None:
    """Write greetings/index.html: players, waveforms, coverage matrix.

    One row per clip (player, text, engine/voice, duration, loudness and true peak against
    the target, draft/stale flags, waveform) and a phrases x languages coverage matrix. The
    page is self-contained and opens from disk. voices.yaml, when present, adds phrases not
    written for a language and stale flags; templates/report.html.j2 next to it replaces the
    shipped template.
    """
    from greetkit.report import write_report

    spec = config if config.is_file() else None
    if spec is None:
        click.echo(f"note: {config} not found; coverage comes from the manifest alone", err=True)
    page = write_report(store_dir(config, out), spec, html,
                        on_note=lambda note: click.echo(f"note: {note}", err=True))
    click.echo(f"wrote {page}")
