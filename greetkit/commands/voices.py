"""greetkit voices"""

from __future__ import annotations

from pathlib import Path

import click

from greetkit.commands._options import config_option


@click.command()
@config_option
@click.option("-e", "--engine", type=click.Choice(["edge", "espeak"]), default="edge",
              show_default=True, help="Whose voices to list.")
@click.option("-l", "--language", default=None, help="Only voices for this language (zh, en-GB).")
@click.option("--refresh", is_flag=True,
              help="edge: fetch the service's voice list and cache it next to voices.yaml.")
def command(config: Path, engine: str, language: str | None, refresh: bool) -> None:
    """List the voices an engine offers.

    edge's list comes from the project's cache (.greetkit/edge-voices.json next to voices.yaml,
    written by --refresh where the service is reachable), else greetkit's built-in list of
    well-known voices. voices.yaml validation checks edge voices against the same list.
    espeak's list comes from the espeak-ng data shipped with greetkit.
    """
    if engine == "espeak":
        if refresh:
            raise click.UsageError("--refresh only applies to --engine edge; espeak's voices "
                                   "ship with it")
        _list_espeak(language)
    else:
        _list_edge(config.parent, language, refresh)


def _matches(language: str | None, *codes: str) -> bool:
    if not language:
        return True
    wanted = language.replace("_", "-").casefold()
    return any(c.casefold() == wanted or c.casefold().startswith(wanted + "-") for c in codes)


def _list_espeak(language: str | None) -> None:
    from greetkit.engines.espeak import EspeakEngine

    rows = [(ident, ", ".join(langs)) for ident, langs in sorted(EspeakEngine().voices().items())
            if _matches(language, *langs)]
    _table([("VOICE", "LANGUAGES"), *rows])
    click.echo(f"{len(rows)} espeak voices" + (f" for {language!r}" if language else ""))


def _list_edge(project_dir: Path, language: str | None, refresh: bool) -> None:
    from greetkit.engines.edge import (
        VOICE_CACHE,
        builtin_voices,
        cached_voices,
        refresh_voice_cache,
    )

    if refresh:
        path = refresh_voice_cache(project_dir)
        click.echo(f"cached the edge voice list in {path}", err=True)
    voices = cached_voices(project_dir)
    source = f"cached in {project_dir / VOICE_CACHE}"
    if voices is None:
        voices = builtin_voices()
        source = "greetkit's built-in list; 'greetkit voices --refresh' fetches the full one"
    rows = [(v.short_name, v.locale, v.gender) for v in voices
            if _matches(language, v.locale, v.language)]
    _table([("VOICE", "LOCALE", "GENDER"), *rows])
    click.echo(f"{len(rows)} edge voices" + (f" for {language!r}" if language else "")
               + f" ({source})")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
