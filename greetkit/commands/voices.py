"""greetkit voices"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option
from greetkit.engines import engine_names


@click.command()
@config_option
@click.option("-e", "--engine", type=click.Choice(engine_names()), default="edge",
              show_default=True, help="Whose voices to list.")
@click.option("-l", "--language", default=None,
              help="Only voices for this language (zh matches zh-CN, zh-TW ...).")
@click.option("--refresh", is_flag=True,
              help="Fetch the service's full voice list and cache it next to voices.yaml "
                   "(edge).")
def command(config: Path, engine: str, language: str | None, refresh: bool) -> None:
    """List the voices an engine offers.

    edge's list comes from the project's cache (.greetkit/edge-voices.json next to voices.yaml,
    written by --refresh where the service is reachable), else greetkit's built-in list of
    well-known voices. voices.yaml validation checks edge voices against the same list.
    espeak's list comes from the espeak-ng data shipped with greetkit.
    """
    from greetkit.engines import list_voices

    found = list_voices(engine, language=language, project_dir=config.parent, refresh=refresh)
    _table([("VOICE", *found.columns), *((v.name, *v.details) for v in found.voices)])
    click.echo(f"{len(found.voices)} {engine} voices"
               + (f" for {language!r}" if language else "")
               + (f" ({found.source})" if found.source else ""))


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
