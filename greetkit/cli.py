"""``greetkit`` command line: a thin layer over the library API.

Each command lives in ``greetkit/commands/<verb>.py`` as a click command named ``command`` and
is imported only when invoked, so ``greetkit --help`` stays instant. Commands call one library
function and let :func:`main` turn a :class:`~greetkit.errors.GreetkitError` into a one-line
message and an exit code: no tracebacks for expected failures.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from greetkit import __version__
from greetkit.errors import GreetkitError, SpecError

#: verb -> one-line help, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "build": "Render voices.yaml into loudness-normalized clips in greetings/.",
    "list": "Show the built clips: key, language, engine/voice, duration, loudness, status.",
    "verify": "Check every stored clip against the manifest (exit 1 on any mismatch).",
    "gc": "Delete clip files no kept version names (--keep N newest versions).",
    "rollback": "Make an earlier published version current again (locally or remotely).",
    "publish": "Upload a built bank to object storage as a new version.",
    "pull": "Download a published bank version into a local store.",
    "preview": "Print a clip's summary and waveform, play it, or audition new text.",
    "report": "Write greetings/index.html: players, waveforms, coverage matrix.",
    "loudness": "Measure integrated loudness, LRA and true peak of audio files.",
    "voices": "List the voices an engine offers.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"greetkit.commands.{cmd_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"greetkit.commands.{cmd_name}":
                return None
            raise
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Use the static help lines: listing must not import every command module.
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="greetkit")
def cli() -> None:
    """greetkit: pre-built greeting audio for real-time voice agents.

    Declare languages, voices and phrases in voices.yaml, run 'greetkit build', and load the
    result in your agent's prewarm with greetkit.load("greetings").
    """


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: run the CLI, mapping greetkit errors to a message and exit code."""
    try:
        return cli.main(args=argv, prog_name="greetkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SpecError as exc:
        for issue in exc.issues:  # already 'file:line: path: problem; fix'
            click.echo(str(issue), err=True)
        sys.exit(exc.exit_code)
    except GreetkitError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"greetkit: {line}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
