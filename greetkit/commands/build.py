"""greetkit build"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from greetkit.commands._options import config_option, out_option
from greetkit.manifest import ClipEntry

if TYPE_CHECKING:
    from greetkit.build import BuildResult

_MARK = {"rendered": "rendered", "reused": "up to date", "draft": "DRAFT", "failed": "FAILED"}


def clip_lines(clips: Iterable[ClipEntry], keys: set[str]) -> list[str]:
    """One line per rendered clip: loudness, true peak, the gain applied and any limiting."""
    rows = [c for c in clips if c.key in keys]
    width = max((len(c.key) for c in rows), default=0)
    return [
        f"  {c.key:<{width}}  {c.lufs:6.2f} LUFS  {c.true_peak_db:6.2f} dBTP  "
        f"gain {c.gain_db:+6.2f} dB  "
        + (f"limited {c.limiter_db:.2f} dB" if c.limiter_db > 0 else "not limited")
        + ("  draft" if c.draft else "")
        for c in rows
    ]


@click.command()
@config_option
@out_option
@click.option("--force", is_flag=True, help="Re-render every clip, even unchanged ones.")
@click.option("--strict", is_flag=True,
              help="Exit 1 if any clip is a draft (the preferred engine was unreachable).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line (and failures).")
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
              metavar="SECONDS",
              help="Wait this long for another build of the same store to finish.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Clips mastered at once, in worker processes (loudness, limiter, true "
                   "peak: the CPU-heavy part). Default: every core. --jobs 1 works in this "
                   "process. The bank is the same either way.")
def command(config: Path, out: Path | None, force: bool, strict: bool, quiet: bool,
            wait: float, jobs: int | None) -> None:
    """Render voices.yaml into loudness-normalized clips in greetings/.

    Unchanged clips are reused (their content key covers text, engine and version, voice,
    options and DSP settings). When the preferred engine cannot be reached, clips are rendered
    with the offline espeak engine and flagged as drafts; the next build that reaches the
    engine replaces them. The manifest is published last and atomically; an invalid
    voices.yaml exits 2 and writes nothing.
    """
    from greetkit.build import build
    from greetkit.errors import DraftsPresent

    shown = _Progress(quiet=quiet)
    try:
        result = build(config, out, force=force, strict=strict, progress=shown.clip,
                       on_plan=shown.plan, wait=wait, jobs=jobs)
    except DraftsPresent as exc:  # --strict: the bank is built; report it, then the error
        shown.close()
        if exc.result is not None:
            _report(exc.result, quiet)
        raise
    finally:
        shown.close()
    _report(result, quiet)
    if result.failed:
        sys.exit(1)


class _Progress:
    """A progress bar on a terminal; one line per finished clip in logs and CI."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self.bar: Any = None
        self.done = 0
        self.planned = 0

    def plan(self, todo: int, total: int) -> None:
        self.planned = todo
        if todo and self.tty:
            self.bar = click.progressbar(length=todo, label=f"rendering {todo}/{total} clips",
                                         file=sys.stderr, show_pos=True)
            self.bar.__enter__()

    def clip(self, key: str, status: str) -> None:
        if status == "reused":
            return
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif not self.quiet and not self.tty:
            click.echo(f"[{self.done}/{self.planned}] {key}: {_MARK[status]}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _report(result: BuildResult, quiet: bool) -> None:
    """Warnings, drafts (one line per distinct reason), the rendered clips' levels,
    failures (even with --quiet: they explain the exit status) and the summary."""
    if not quiet:
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        by_reason: dict[str, list[str]] = {}
        for key, reason in result.drafts.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            click.echo(f"draft: {', '.join(keys)}: {reason}", err=True)
        if result.manifest is not None:
            for line in clip_lines(result.manifest.clips, set(result.rendered)):
                click.echo(line)
    for key, reason in result.failed.items():
        click.echo(f"failed: {key}: {reason}", err=True)
    click.echo(result.summary())
