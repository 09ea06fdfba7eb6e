"""greetkit list"""

from __future__ import annotations

import json
from pathlib import Path

import click

from greetkit.commands._options import config_option, out_option, store_dir


@click.command()
@config_option
@out_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's clips as JSON.")
def command(config: Path, out: Path | None, as_json: bool) -> None:
    """Show the built clips: key, language, engine/voice, duration, loudness, status.

    STATUS is 'built', 'draft' (rendered by the offline fallback engine) or 'stale' (the next
    'greetkit build' would re-render it: voices.yaml changed its text, voice, options such as
    rate, loudness preset or sample rates, or the engine or DSP version changed). With --json
    each clip's manifest entry carries the same 'status'.
    """
    from greetkit.errors import GreetkitError, StoreError
    from greetkit.store import Store

    root = store_dir(config, out)
    manifest = Store(root).manifest()
    if manifest is None:
        raise StoreError(f"{root}: no manifest.json; run 'greetkit build' first")
    stale: dict[str, str] = {}
    try:
        from greetkit.keys import stale_clips
        from greetkit.spec import load_spec

        stale = stale_clips(manifest.clips, load_spec(config))
    except GreetkitError:
        pass  # no (valid) spec here: list what is built without staleness
    statuses = {c.key: "stale" if c.key in stale else "draft" if c.draft else "built"
                for c in manifest.clips}
    if as_json:
        click.echo(json.dumps([{**c.to_json(), "status": statuses[c.key]}
                               for c in manifest.clips], ensure_ascii=False, indent=2))
        return
    rows = [("KEY", "LANG", "ENGINE/VOICE", "DUR", "LUFS", "TP dB", "STATUS")]
    for c in manifest.clips:
        status = statuses[c.key]
        rows.append((c.key, c.language, f"{c.engine}/{c.voice}", f"{c.duration:.2f}s",
                     f"{c.lufs:.1f}", f"{c.true_peak_db:.1f}", status))
    for bad in manifest.refused:  # failed the manifest's schema: why is on stderr
        rows.append((bad.key, bad.language or "?", "?", "-", "-", "-", "refused"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    click.echo(f"{len(manifest.clips)} clips, version {manifest.version}, "
               f"built {manifest.built_at}")
    for bad in manifest.refused:
        click.echo(f"greetkit: {bad.problem}", err=True)
