"""Listen to and look at one clip: its summary, a terminal waveform, playback, auditions.

The library side of ``greetkit preview``. A :class:`Preview` holds the exact int16 samples a
listener would hear plus what the manifest says about them; it comes either from the store
(:func:`load_clip`) or from an audition of new text (:func:`audition`), which runs the same
engine and DSP chain as a build but stores nothing.

Playback uses ``sounddevice`` (the ``greetkit[preview]`` extra, which needs the PortAudio
library). Without it, without an output device, or with ``GREETKIT_AUDIO=none`` in the
environment (servers, CI, tests), :func:`play` returns one line saying why nothing was played.

>>> p = load_clip("greetings", "zh_default")  # doctest: +SKIP
>>> print("\\n".join(summary_lines(p) + waveform(p.pcm, 60)))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from greetkit.errors import ClipNotFound, SpecError, SpecIssue, StoreError
from greetkit.manifest import ClipEntry, ClipFile, Manifest
from greetkit.suggest import suggest

#: Set to ``none`` to never open an audio device (servers, CI, tests).
AUDIO_ENV = "GREETKIT_AUDIO"
#: Eighth blocks, empty to full: a column's height in the terminal waveform.
_BLOCKS = " ▁▂▃▄▅▆▇█"
#: Loudness this far from the target (LU) or a true peak this far over the ceiling (dB) is
#: flagged; the build lands within a few hundredths, so a flag means a clip too short to gate
#: or a limiter that had to work hard.
LOUDNESS_TOLERANCE_LU = 1.0
PEAK_TOLERANCE_DB = 0.1


@dataclass(frozen=True, kw_only=True)
class Preview:
    """One clip as heard: its samples and what describes them."""

    key: str
    text: str
    language: str
    engine: str
    voice: str
    sample_rate: int
    pcm: npt.NDArray[np.int16]
    lufs: float
    true_peak_db: float
    target_lufs: float
    true_peak_ceiling_db: float
    draft: bool
    draft_reason: str | None = None
    preferred_engine: str | None = None
    #: Bank version and build time; None for an audition (never stored).
    version: int | None = None
    built_at: str | None = None
    #: The stored WAV holding exactly these samples; None for an audition.
    file: Path | None = None
    #: Things worth telling the listener (an audition's voice an online engine may not know).
    notes: tuple[str, ...] = ()
    #: Why the next build would re-render this stored clip (greetkit.keys), else None.
    stale: str | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return float(self.pcm.shape[0]) / self.sample_rate

    @property
    def stored(self) -> bool:
        """Whether this clip is in the store (False for an audition)."""
        return self.file is not None


# -- stored clips ------------------------------------------------------------------------

def find_entry(manifest: Manifest, key: str) -> ClipEntry:
    """The manifest entry for ``key``; :class:`ClipNotFound` (exit code 2) with the closest
    keys otherwise, since an unknown key is a typo on the command line."""
    entries = manifest.by_key()
    if key in entries:
        return entries[key]
    err = ClipNotFound(key, suggest(key, entries, n=3))
    err.exit_code = 2
    raise err


def read_pcm(path: Path, record: ClipFile) -> npt.NDArray[np.int16]:
    """The int16 samples of a stored clip file, after checking it against the manifest.

    Raises :class:`StoreError` when the file is missing, has other bytes than the manifest
    records (a corrupted clip should be reported, not heard as noise) or is not a plain WAV.
    """
    from greetkit.store import file_problem

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"{path}: cannot read clip ({exc.strerror}); run 'greetkit build'"
                         ) from exc
    problem = file_problem(data, record)
    if problem is not None:
        raise StoreError(f"{path}: does not match the manifest: {problem}; run "
                         "'greetkit verify' and 'greetkit build --force'")
    return np.frombuffer(data, dtype="<i2", count=record.samples,
                         offset=record.data_offset).astype(np.int16)


def load_clip(store_dir: Path | str, key: str, *, rate: int | None = None,
              spec: Path | str | None = None) -> Preview:
    """Read clip ``key`` (at ``rate``, default 48 kHz) from the store, checking its checksum.

    With ``spec`` (a voices.yaml that loads), the preview says whether the clip is stale;
    a spec that does not load is ignored here (``greetkit build`` reports its errors).

    Raises :class:`StoreError` when there is no manifest or the file does not match it, and
    :class:`ClipNotFound` (exit code 2) for an unknown key or a rate with no stored variant.
    """
    from greetkit.manifest import BASE_RATE
    from greetkit.store import Store

    store = Store(store_dir)
    manifest = store.manifest()
    if manifest is None:
        raise StoreError(f"{store.root}: no manifest.json; run 'greetkit build' first")
    entry = find_entry(manifest, key)
    stored = entry.files.get(rate or BASE_RATE)
    if stored is None:
        err = ClipNotFound(f"{key} at {rate} Hz", [f"{key} at {r} Hz" for r in entry.files])
        err.exit_code = 2
        raise err
    path = store.path_of(stored.file)
    pcm = read_pcm(path, stored)
    stale = None
    if spec is not None:
        from greetkit.errors import GreetkitError
        from greetkit.keys import stale_reason
        from greetkit.spec import load_spec

        try:
            loaded = load_spec(spec)
        except GreetkitError:
            loaded = None
        if loaded is not None:
            wanted = {c.key: c for c in loaded.clips}
            stale = stale_reason(entry, wanted.get(entry.key), loaded.sample_rates)
    return Preview(
        key=entry.key, text=entry.text, language=entry.language, engine=entry.engine,
        voice=entry.voice, sample_rate=stored.sample_rate, pcm=pcm, lufs=stored.lufs,
        true_peak_db=stored.true_peak_db,
        target_lufs=entry.target_lufs, true_peak_ceiling_db=entry.true_peak_ceiling_db,
        draft=entry.draft, draft_reason=entry.draft_reason,
        preferred_engine=entry.preferred_engine, version=manifest.version,
        built_at=manifest.built_at, file=path, stale=stale,
    )


def write_wav(preview: Preview, out: Path | str) -> Path:
    """Write the clip to ``out``: a byte-for-byte copy of the stored WAV, or (for an
    audition) the same 16-bit mono WAV a build would store."""
    from greetkit.store import atomic_write
    from greetkit.wav import encode

    out = Path(out)
    data = preview.file.read_bytes() if preview.file else encode(preview.pcm,
                                                                    preview.sample_rate)
    atomic_write(out, data)
    return out


# -- what ``greetkit preview`` shows ----------------------------------------------------

def open_clip(key: str | None = None, *, text: str | None = None,
              store: Path | str = "greetings", config: Path | str | None = None,
              language: str | None = None, voice: str | None = None,
              engine: str | None = None, rate: int | None = None) -> Preview:
    """The clip ``greetkit preview`` shows: stored clip ``key`` (:func:`load_clip`, from
    ``store``) or an audition of ``text`` (:func:`audition`), exactly one of them.

    ``config`` is the voices.yaml: an audition takes its settings from it (it must load);
    for a stored clip it only tells whether the clip is stale. Raises :class:`SpecError`
    (exit code 2) for a usage mistake, such as ``language``/``voice``/``engine`` without
    ``text``.
    """
    if (key is None) == (text is None):
        raise _usage("preview", "give a clip KEY or --text, not both; 'greetkit list' shows "
                     "the keys")
    if text is not None:
        return audition(text, config=config, language=language, voice=voice, engine=engine,
                        rate=rate)
    if language or voice or engine:
        raise _usage("preview", "--language/--voice/--engine go with --text; a stored clip "
                     "already has them")
    assert key is not None
    return load_clip(store, key, rate=rate, spec=config)


def screen(p: Preview, width: int) -> list[str]:
    """What ``greetkit preview`` prints for a clip: its summary, a waveform ``width``
    characters wide, and the time axis under it."""
    return summary_lines(p) + waveform(p.pcm, width) + [time_axis(p.duration, width)]


# -- auditions ---------------------------------------------------------------------------

def _usage(what: str, message: str) -> SpecError:
    return SpecError([SpecIssue(what, None, "", message)])


def audition(
    text: str,
    *,
    config: Path | str | None = None,
    language: str | None = None,
    voice: str | None = None,
    engine: str | None = None,
    rate: int | None = None,
) -> Preview:
    """Render ``text`` as a build would (engine, then the DSP chain) without storing it.

    Settings come from ``config`` (a voices.yaml) when given: its variables fill ``{{ }}`` in
    the text, and the language's voice, delivery options and the default loudness apply.
    Without a config the espeak engine and the ``speech`` loudness preset are used. When the
    chosen engine cannot be reached and is not offline, the espeak voice for the language
    renders a draft instead, and ``draft_reason`` says why (the build's rule:
    :mod:`greetkit.render`, which does the rendering here too).

    >>> p = audition("Hello there!", language="en", engine="espeak")  # doctest: +SKIP
    >>> round(p.lufs)  # doctest: +SKIP
    -18
    """
    from greetkit.render import RenderJob, choose, render_clip, unusable
    from greetkit.resolve import audition_clip
    from greetkit.spec import ALLOWED_RATES, BASE_RATE, load_spec

    spec = load_spec(config) if config is not None else None
    rate = rate or BASE_RATE
    if rate not in ALLOWED_RATES:
        raise _usage("--rate", f"{rate} is not a supported rate; choose from "
                     + ", ".join(str(r) for r in ALLOWED_RATES))
    clip, notes = audition_clip(text, spec, language=language, voice=voice, engine=engine)
    job = RenderJob(clip=clip, choice=choose(clip, unusable(clip.engine)), sample_rates=(rate,),
                    project_dir=spec.project_dir if spec else Path("."), seed=0)
    rendered = render_clip(job)
    out = rendered.outputs[0]
    return Preview(
        key=clip.key, text=clip.text, language=clip.language, engine=rendered.choice.engine,
        voice=rendered.choice.voice, sample_rate=rate, pcm=np.asarray(out.pcm, dtype=np.int16),
        lufs=float(out.lufs), true_peak_db=float(out.true_peak_db),
        target_lufs=clip.loudness.target_lufs,
        true_peak_ceiling_db=clip.loudness.true_peak_ceiling_db,
        draft=rendered.choice.draft, draft_reason=rendered.choice.draft_reason,
        preferred_engine=clip.engine, notes=notes,
    )


# -- what is printed ---------------------------------------------------------------------

def loudness_note(lufs: float, target: float) -> str:
    """``ok`` or how far the integrated loudness is from its target."""
    delta = lufs - target
    return "ok" if abs(delta) <= LOUDNESS_TOLERANCE_LU else f"{delta:+.1f} LU off target"


def peak_note(peak: float, ceiling: float) -> str:
    """``ok`` or how far the true peak is over its ceiling."""
    over = peak - ceiling
    return "ok" if over <= PEAK_TOLERANCE_DB else f"{over:.1f} dB over the ceiling"


def summary_lines(p: Preview) -> list[str]:
    """What a person needs to judge a clip, one fact per line."""
    if p.draft:
        why = f": {p.draft_reason}" if p.draft_reason else ""
        status = f"DRAFT (preferred engine {p.preferred_engine}{why})"
    else:
        status = "built"
    if p.stale:
        status += f"; stale: {p.stale} (run 'greetkit build')"
    if p.version is not None:
        version = f"{p.version} (built {p.built_at})"
    else:
        version = "audition, not stored"
    rows = [
        ("text", p.text),
        ("language", p.language),
        ("engine", f"{p.engine} / {p.voice}"),
        ("status", status),
        ("version", version),
        ("duration", f"{p.duration:.2f} s ({p.pcm.shape[0]} samples at {p.sample_rate} Hz, "
                     "mono, 16-bit)"),
        ("loudness", f"{p.lufs:.1f} LUFS integrated (target {p.target_lufs:.1f}: "
                     f"{loudness_note(p.lufs, p.target_lufs)})"),
        ("true peak", f"{p.true_peak_db:.1f} dBTP (ceiling {p.true_peak_ceiling_db:.1f}: "
                      f"{peak_note(p.true_peak_db, p.true_peak_ceiling_db)})"),
    ]
    return [p.key] + [f"  {name:<10} {value}" for name, value in rows]


def envelope(pcm: npt.NDArray[np.int16], columns: int
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-column (minimum, maximum) of ``pcm`` scaled to [-1, 1]: the outline of a waveform.

    The samples are split into ``columns`` nearly equal runs; a column with no samples (a
    clip shorter than the width) repeats its neighbour's sample.

    >>> lo, hi = envelope(np.array([0, 16384, -32768, 0], dtype=np.int16), 2)
    >>> lo.tolist(), hi.tolist()
    ([0.0, -1.0], [0.5, 0.0])
    """
    if columns <= 0:
        raise ValueError("columns must be positive")
    x = np.asarray(pcm, dtype=np.int16).reshape(-1)
    if x.size == 0:
        zeros = np.zeros(columns)
        return zeros, zeros.copy()
    starts = np.minimum((np.arange(columns) * x.size) // columns, x.size - 1)
    lo = np.minimum.reduceat(x, starts).astype(np.float64) / 32768.0
    hi = np.maximum.reduceat(x, starts).astype(np.float64) / 32768.0
    return lo, hi


def waveform(pcm: npt.NDArray[np.int16], width: int, *, rows: int = 3,
             indent: str = "  ") -> list[str]:
    """The clip's peak outline as ``rows`` lines of block characters, ``width`` wide in all
    (indent included), with a time axis under it. Deterministic: same samples, same text.

    Each column is the largest absolute sample of its slice of the clip, on a linear scale
    where ``rows`` full blocks are digital full scale, drawn in eighths of a row.
    """
    columns = max(1, width - len(indent))
    lo, hi = envelope(pcm, columns)
    peak = np.maximum(np.abs(lo), np.abs(hi))
    levels = np.rint(np.clip(peak, 0.0, 1.0) * rows * 8).astype(int)
    lines = []
    for row in range(rows - 1, -1, -1):
        fill = np.clip(levels - row * 8, 0, 8)
        lines.append(indent + "".join(_BLOCKS[int(f)] for f in fill).rstrip())
    return lines


def time_axis(duration: float, width: int, *, indent: str = "  ") -> str:
    """``0 s`` at the left and the duration at the right, under a waveform of ``width``."""
    left, right = "0 s", f"{duration:.2f} s"
    gap = max(1, width - len(indent) - len(left) - len(right))
    return f"{indent}{left}{' ' * gap}{right}"


# -- playback ----------------------------------------------------------------------------

def play(pcm: npt.NDArray[np.int16], sample_rate: int) -> str | None:
    """Play ``pcm`` on the default output device and wait until it ends.

    Returns None when the clip was played, else one short reason why it was not: no
    ``sounddevice``/PortAudio, no output device, or ``GREETKIT_AUDIO=none``. Never raises
    for a missing device: a server without sound is a normal place to run greetkit.
    """
    if os.environ.get(AUDIO_ENV, "").strip().lower() == "none":
        return f"not played: audio output disabled ({AUDIO_ENV}=none)"
    try:
        import sounddevice as sd
    except ImportError:
        return "not played: playback needs the 'preview' extra (pip install 'greetkit[preview]')"
    except OSError as exc:  # sounddevice is installed but the PortAudio library is not
        return f"no audio device: {exc}"
    try:
        sd.query_devices(kind="output")
        sd.play(pcm, samplerate=sample_rate, blocking=True)
    except (sd.PortAudioError, OSError, ValueError) as exc:
        return f"no audio device: {' '.join(str(exc).split()) or type(exc).__name__}"
    except KeyboardInterrupt:
        sd.stop()
        raise
    return None
