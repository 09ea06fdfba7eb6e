"""greetkit preview"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import click

from greetkit.commands._options import config_option, store_dir

if TYPE_CHECKING:
    from greetkit.preview import Preview

_RATES = click.Choice(["8000", "16000", "22050", "24000", "32000", "44100", "48000"])


@click.command()
@click.argument("key", required=False)
@config_option
@click.option("-o", "--out", "--store", "store", type=click.Path(file_okay=False, path_type=Path),
              default=None,
              help="The greetings store, as for every command [default: greetings/ next to "
                   "the config].")
@click.option("--text", help="Audition this text instead of a stored clip (not stored).")
@click.option("--language", help="Language of --text [default: the spec's default].")
@click.option("--voice", help="Voice for --text [default: the language's voice].")
@click.option("--engine", help="Engine for --text [default: as a build would choose].")
@click.option("--rate", type=_RATES, default=None,
              help="Sample rate: a stored variant, or the rate an audition is rendered at.")
@click.option("-w", "--wav", "wav", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="FILE.wav",
              help="Also write the clip here (a byte-for-byte copy of the stored file).")
@click.option("--no-play", is_flag=True, help="Do not play the clip.")
@click.option("--width", type=click.IntRange(min=16, max=400), default=None,
              help="Waveform width in characters [default: the terminal's].")
def command(key: str | None, config: Path, store: Path | None, text: str | None,
            language: str | None, voice: str | None, engine: str | None, rate: str | None,
            wav: Path | None, no_play: bool, width: int | None) -> None:
    """Print a clip's summary and waveform, play it, or audition new text.

    KEY is a clip key such as 'zh_default' (see 'greetkit list'). The clip is played on the
    default audio output when there is one (needs 'greetkit[preview]'); otherwise one line
    says why, and the command still succeeds. GREETKIT_AUDIO=none never opens a device.

    With --text, the text is rendered through the same engine and DSP chain as a build,
    using voices.yaml's variables, voices and loudness when it exists, and nothing is stored.
    """
    from greetkit.preview import open_clip, screen, write_wav

    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("config") is not click.core.ParameterSource.DEFAULT
    # Without voices.yaml an audition still works with espeak; a -c given on purpose must
    # exist (for a stored clip the spec only tells whether it is stale).
    clip = open_clip(key, text=text, store=store_dir(config, store),
                     config=config if explicit or config.is_file() else None,
                     language=language, voice=voice, engine=engine,
                     rate=int(rate) if rate else None)
    for note in clip.notes:
        click.echo(f"note: {note}", err=True)
    for line in screen(clip, width or max(16, min(shutil.get_terminal_size((80, 24)).columns,
                                                  160))):
        click.echo(line)
    if wav is not None:
        write_wav(clip, wav)
        what = "copy of the stored clip" if clip.stored else "audition"
        click.echo(f"wrote {wav} ({what}, {clip.sample_rate} Hz)")
    if not no_play:
        _play(clip, hint="" if wav else "; write it with --wav FILE.wav to listen elsewhere")


def _play(clip: Preview, *, hint: str) -> None:
    from greetkit.preview import play

    problem = play(clip.pcm, clip.sample_rate)
    if problem is None:
        click.echo("played on the default audio output")
    else:
        # One line, and success: no sound card is normal on a server or in CI.
        click.echo(problem + hint)
