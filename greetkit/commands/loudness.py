"""greetkit loudness"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

#: The JSON keys, in output order (issue 3's contract for ``--json``).
JSON_KEYS = ("file", "integrated_lufs", "lra", "max_momentary_lufs", "max_short_term_lufs",
             "true_peak_db")


def _number(value: float) -> float | None:
    """JSON has no -inf: silence is null."""
    return None if math.isinf(value) or math.isnan(value) else round(value, 3)


def _cell(value: float) -> str:
    return "-inf" if math.isinf(value) and value < 0 else f"{value:.1f}"


@click.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per file per line instead of a table.")
def command(files: tuple[Path, ...], as_json: bool) -> None:
    """Measure integrated loudness, LRA and true peak of audio files.

    Per file: integrated loudness I (LUFS, ITU-R BS.1770 gated), loudness range LRA (LU,
    EBU Tech 3342), maximum momentary and short-term loudness (LUFS) and true peak (dBTP,
    oversampled). Clips shorter than 0.4 s are measured as one block and flagged;
    silence reads -inf (null in --json).

    Every readable file is measured; the ones that cannot be read are named afterwards, one
    line each, and the exit code is 1.
    """
    from greetkit.errors import AudioError
    from greetkit.loudness import measure_file

    rows = [("FILE", "I LUFS", "LRA LU", "M max", "S max", "TP dBTP", "NOTES")]
    failures: list[str] = []
    for path in files:
        try:
            report = measure_file(path)
        except AudioError as exc:
            failures.append(str(exc))
            continue
        if as_json:
            numbers = (report.integrated_lufs, report.lra, report.max_momentary_lufs,
                       report.max_short_term_lufs, report.true_peak_db)
            record: dict[str, object] = {"file": str(path)}
            record.update(zip(JSON_KEYS[1:], map(_number, numbers), strict=True))
            click.echo(json.dumps(record, ensure_ascii=False))
            continue
        rows.append((str(path), _cell(report.integrated_lufs), f"{report.lra:.1f}",
                     _cell(report.max_momentary_lufs), _cell(report.max_short_term_lufs),
                     _cell(report.true_peak_db), ",".join(report.warnings)))
    if not as_json and len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            click.echo("  ".join(v.rjust(w) if 0 < i < 6 else v.ljust(w)
                                 for i, (v, w) in enumerate(zip(r, widths, strict=True))
                                 ).rstrip())
    if failures:
        raise AudioError("\n".join(failures))
