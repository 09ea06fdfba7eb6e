"""voices.yaml: parse, validate once, and hand the rest of greetkit frozen dataclasses.

The loader keeps the line of every key, rejects duplicate keys and Python-object tags, and
collects *every* problem before raising one :class:`~greetkit.errors.SpecError`, each line of
which reads ``voices.yaml:14: languages.zh.voices.edge: what is wrong; how to fix``.

Three steps, each in its own module:

1. :mod:`greetkit.spec.document` reads the file within its caps and turns the YAML into
   plain values, remembering each key's line;
2. :mod:`greetkit.spec.schema` checks those values against the schema, declared as data
   (sections, keys, kinds, defaults, docstrings);
3. :mod:`greetkit.resolve` decides each clip's text, engine, voice, options and loudness.

The schema (see the README for a commented example)::

    version: 1
    engines: {name: {livekit: module:callable, options}}
    defaults: {engine, language, loudness, sample_rates}
    variables: {name: value}
    languages: {code: {voices: {engine: voice}, rate, pitch, volume, engine}}
    phrases: {name: {<language>: text | {text|template, engine, voice, recording, ...},
                     template, languages, loudness, engine}}
    fallback: {language, text | template, engine, loudness}
"""

from __future__ import annotations

from pathlib import Path

from greetkit.params import DEFAULT_PRESET as DEFAULT_PRESET
from greetkit.params import LOUDNESS_PRESETS as LOUDNESS_PRESETS
from greetkit.spec.document import Doc, parse, read_text
from greetkit.spec.model import (
    ALLOWED_RATES,
    BASE_RATE,
    DRAFT_ENGINE,
    MAX_CLIP_SECONDS,
    MAX_CLIPS,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_RECORDING_BYTES,
    MAX_TEXT_CHARS,
    RECORDING_SUFFIXES,
    SCHEMA_VERSION,
    ClipSpec,
    Language,
    Loudness,
    Spec,
    clip_key,
    is_speakable,
)

__all__ = [
    "ALLOWED_RATES", "BASE_RATE", "DEFAULT_PRESET", "DRAFT_ENGINE", "LOUDNESS_PRESETS",
    "MAX_CLIPS", "MAX_CLIP_SECONDS", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES",
    "MAX_RECORDING_BYTES", "MAX_TEXT_CHARS", "RECORDING_SUFFIXES", "SCHEMA_VERSION",
    "ClipSpec", "Language", "Loudness", "Spec", "clip_key", "is_speakable", "load_spec",
]


def load_spec(path: Path | str = "voices.yaml", *, templates_dir: Path | None = None) -> Spec:
    """Read and validate a voices.yaml; raise :class:`SpecError` listing every problem.

    >>> spec = load_spec("voices.yaml")  # doctest: +SKIP
    >>> [c.key for c in spec.clips]  # doctest: +SKIP
    ['en_default', 'zh_default', 'en_child_friendly', 'fallback']
    """
    from greetkit.engines import engine_names
    from greetkit.resolve import resolve
    from greetkit.spec.fields import Context
    from greetkit.spec.schema import VOICES_YAML

    path = Path(path)
    name = str(path) if not path.is_absolute() else path.name
    doc = Doc(name)
    data = parse(read_text(path, name), doc)
    spec = None
    if data is not None and doc.nodes <= MAX_NODES:
        # Checked even after structural problems (duplicate keys ...): all errors at once.
        # Not past the node cap: values after it are missing, so a section would be
        # reported empty or absent when it is not.
        ctx = Context(doc, engine_names())
        document = VOICES_YAML.check(data, (), ctx)
        spec = resolve(document, ctx, path, templates_dir or path.parent / "templates")
    if doc.issues or spec is None:
        raise doc.failure()
    return spec
