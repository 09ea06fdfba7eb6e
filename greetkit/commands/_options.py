"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

config_option = click.option(
    "-c", "--config", type=click.Path(path_type=Path), default=Path("voices.yaml"),
    show_default=True, help="The voices.yaml to read.",
)
out_option = click.option(
    "-o", "--out", type=click.Path(path_type=Path), default=None,
    help="The greetings store [default: greetings/ next to the config].",
)


def store_dir(config: Path, out: Path | None) -> Path:
    """Where the store is: --out, else greetings/ beside the config."""
    return out if out is not None else config.parent / "greetings"
