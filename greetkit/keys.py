"""Content keys and the one stale rule, without scipy.

A clip's content key is a hash of exactly what changes its bytes. A built clip is *stale*
exactly when the key the next build would compute for it differs from the key it was built
with: ``greetkit build`` (what to reuse), ``greetkit list``, the report and ``greetkit preview``
all ask :func:`stale_reason`, so they cannot disagree. Nothing here imports scipy: a no-op
build needs only this, the spec and the manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from greetkit.errors import GreetkitError
from greetkit.manifest import CLIP_FORMAT, ClipEntry
from greetkit.params import DspParams
from greetkit.spec import DRAFT_ENGINE, ClipSpec, Spec

if TYPE_CHECKING:
    from greetkit.engines.base import Engine


def content_key(clip: ClipSpec, engine: Engine, voice: str) -> str:
    """The one content key: a hash of exactly what changes a clip's bytes.

    Rendered text, language, engine and its version, voice and options (a recorded take's own
    checksum), the DSP parameters, the store format. Never file times.
    """
    options: dict[str, Any] = dict(clip.options)
    if "recording" in options:
        from greetkit.engines.recorded import RecordedEngine

        options["recording"] = RecordedEngine.take_digest(options["recording"])
    dsp = DspParams(target_lufs=clip.loudness.target_lufs,
                    true_peak_ceiling_db=clip.loudness.true_peak_ceiling_db)
    payload = {
        "format": CLIP_FORMAT,
        "text": clip.text,
        "language": clip.language,
        "engine": engine.name,
        "engine_version": engine.version(),
        "voice": voice,
        "options": options,
        "dsp": dsp.key(),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def engine_for(entry: ClipEntry, clip: ClipSpec) -> tuple[str, str | None]:
    """(engine, voice) the next build would compare ``entry`` against: the draft engine for
    a draft (a build that reaches the preferred engine replaces it anyway), else the spec's."""
    if entry.draft:
        return DRAFT_ENGINE, clip.draft_voice
    return clip.engine, clip.voice


def stale_reason(entry: ClipEntry, clip: ClipSpec | None,
                 sample_rates: Sequence[int] | None = None) -> str | None:
    """Why the built ``entry`` no longer matches voices.yaml's ``clip``; None when the next
    build would reuse its bytes. Stale exactly when its content key would change (or, given
    the spec's ``sample_rates``, when the clip lacks a rate voices.yaml asks for).

    >>> stale_reason(entry, None)  # doctest: +SKIP
    'no longer in voices.yaml'
    """
    from greetkit.engines import get_engine

    if clip is None:
        return "no longer in voices.yaml"
    if clip.engine != entry.preferred_engine:
        return f"voices.yaml now asks for {clip.engine}"
    engine_name, voice = engine_for(entry, clip)
    if voice is None:
        return f"voices.yaml has no {engine_name} voice for {clip.language} any more"
    try:
        key = content_key(clip, get_engine(engine_name), voice)
    except (GreetkitError, OSError) as exc:
        return f"cannot be rebuilt as is: {exc}"
    if key != entry.content_key:
        return _what_changed(entry, clip, voice)
    if sample_rates is not None:
        built = set(entry.files)
        if built != set(sample_rates):
            return (f"sample rates changed in voices.yaml ({sorted(built)} -> "
                    f"{sorted(set(sample_rates))})")
    return None


def stale_clips(clips: Iterable[ClipEntry], spec: Spec) -> dict[str, str]:
    """key -> :func:`stale_reason` for every built clip of ``clips`` the next build would not
    reuse as is (what ``greetkit list`` and the report flag)."""
    wanted = {c.key: c for c in spec.clips}
    stale = {}
    for entry in clips:
        reason = stale_reason(entry, wanted.get(entry.key), spec.sample_rates)
        if reason is not None:
            stale[entry.key] = reason
    return stale


def _what_changed(entry: ClipEntry, clip: ClipSpec, voice: str) -> str:
    """The first input the manifest can name that differs (it stores the key, not every
    input, so the rest are summed up)."""
    if clip.text != entry.text:
        return "text changed in voices.yaml"
    if voice != entry.voice:
        return f"voice changed in voices.yaml ({entry.voice} -> {voice})"
    if (clip.loudness.target_lufs, clip.loudness.true_peak_ceiling_db) != (
            entry.target_lufs, entry.true_peak_ceiling_db):
        return (f"loudness changed in voices.yaml ({entry.target_lufs:g} LUFS/"
                f"{entry.true_peak_ceiling_db:g} dBTP -> {clip.loudness.target_lufs:g} LUFS/"
                f"{clip.loudness.true_peak_ceiling_db:g} dBTP)")
    return "voice options (rate, pitch, volume), engine version or DSP settings changed"
