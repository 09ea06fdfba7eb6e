"""Options and progress output shared by publish and pull."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from greetkit.remote import DEFAULT_CONCURRENCY

concurrency_option = click.option(
    "-j", "--concurrency", type=click.IntRange(min=1, max=256), default=DEFAULT_CONCURRENCY,
    show_default=True, help="Transfers in flight at once.",
)


def progress_printer(verb: str) -> Callable[[int, int, str], None]:
    """A progress callback: a live counter on a terminal, else a line per tenth."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int, name: str) -> None:
        if tty:
            end = "\n" if done == total else ""
            click.echo(f"\r{verb} {done}/{total} {name[-60:]:<60}", err=True, nl=False)
            if end:
                click.echo("", err=True)
        elif done == total or done % max(1, total // 10) == 0:
            click.echo(f"{verb} {done}/{total}", err=True)

    return show
