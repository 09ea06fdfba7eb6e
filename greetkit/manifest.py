"""``greetings/manifest.json``: the index of a built greeting bank.

The manifest is the only file readers trust. It names every clip, the immutable WAV holding
its bytes, and that file's checksum. The build writes it last and atomically, so a reader sees
either the old bank or the new one, never a mix.

Format 1 (documented in the README):

.. code-block:: json

    {"format": 1, "version": 7, "built_at": "...", "generator": "greetkit 0.1.0",
     "default_language": "en", "languages": ["en", "zh"], "phrases": ["default", ...],
     "clips": [{"key": "en_default", "phrase": "default", "language": "en", "text": "...",
                "engine": "espeak", "voice": "en-us", "preferred_engine": "edge", "draft": true,
                "draft_reason": "...", "content_key": "...", "file": "clips/en_default.<k>.wav",
                "sha256": "...", "bytes": 123, "data_offset": 44, "sample_rate": 48000,
                "channels": 1, "samples": 96000, "duration": 2.0, "lufs": -18.0,
                "true_peak_db": -1.6, "target_lufs": -18.0, "true_peak_ceiling_db": -1.5,
                "gain_db": 3.2, "limiter_db": 0.0, "warnings": [],
                "variants": [{"sample_rate": 24000, "file": "...", "sha256": "...",
                              "bytes": 1, "data_offset": 44, "samples": 48000,
                              "lufs": -18.0, "true_peak_db": -1.7}]}]}
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from greetkit.errors import StoreError

#: The manifest layout this greetkit writes and reads. Bump on incompatible changes.
FORMAT = 1
#: The rate every clip is stored at (the loader plays it when no other rate is asked for);
#: ``defaults.sample_rates`` in voices.yaml adds others.
BASE_RATE = 48000
MANIFEST_NAME = "manifest.json"
#: Every published version, immutable: ``manifests/<version>.json``.
MANIFESTS_DIR = "manifests"


def version_name(version: int) -> str:
    """File name of a published version's manifest inside ``manifests/``."""
    return f"{version}.json"


@dataclass(frozen=True, kw_only=True)
class Variant:
    """The same clip at another output sample rate (48 kHz is the clip itself)."""

    sample_rate: int
    file: str
    sha256: str
    bytes: int
    data_offset: int
    samples: int
    lufs: float
    true_peak_db: float


@dataclass(frozen=True, kw_only=True)
class ClipEntry:
    """One built clip, as recorded in the manifest."""

    key: str
    phrase: str
    language: str
    text: str
    engine: str
    voice: str
    preferred_engine: str
    draft: bool
    content_key: str
    file: str
    sha256: str
    bytes: int
    data_offset: int
    sample_rate: int
    channels: int
    samples: int
    duration: float
    lufs: float
    true_peak_db: float
    target_lufs: float
    true_peak_ceiling_db: float
    gain_db: float
    limiter_db: float
    draft_reason: str | None = None
    #: What rendered it: for a LiveKit plugin engine its distribution==version, callable and
    #: options (None in manifests written before this field).
    engine_version: str | None = None
    warnings: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ()

    def variant(self, sample_rate: int) -> Variant | None:
        """The stored variant at ``sample_rate``, or None (48 kHz is the entry itself)."""
        for v in self.variants:
            if v.sample_rate == sample_rate:
                return v
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        d["variants"] = [asdict(v) for v in self.variants]
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClipEntry:
        """The entry described by ``data``; raises :class:`StoreError` naming the first
        field of the wrong type or out of range (the schema is :data:`CLIP_FIELDS`)."""
        try:
            return _clip(data)
        except _Bad as exc:
            raise StoreError(f"manifest clip: {exc}; rebuild with 'greetkit build --force'"
                             ) from None


# Computed once: dataclasses.fields() per entry is a measurable share of a 200-clip load.
_ENTRY_FIELDS = frozenset(f.name for f in fields(ClipEntry))
_VARIANT_FIELDS = tuple(f.name for f in fields(Variant))


@dataclass(frozen=True)
class EngineRecord:
    """A LiveKit engine entry as the build used it, with the engine's own level."""

    #: ``module:callable`` returning a ``tts.TTS`` (voices.yaml's ``livekit:``).
    livekit: str
    #: Keyword options passed to it (voices.yaml's ``options:``; never secrets).
    options: Mapping[str, Any]
    #: ``distribution==version`` of the installed plugin at build time.
    plugin: str
    #: The engine's own integrated loudness (BS.1770-4, LUFS): the median over its non-draft
    #: clips of the measured loudness before the build's gain.
    lufs: float

    def to_json(self) -> dict[str, Any]:
        return {"livekit": self.livekit, "options": dict(self.options),
                "plugin": self.plugin, "lufs": self.lufs}


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A whole bank: every clip plus what the loader needs to choose between them."""

    version: int
    built_at: str
    generator: str
    default_language: str
    languages: tuple[str, ...]
    phrases: tuple[str, ...]
    clips: tuple[ClipEntry, ...]
    format: int = FORMAT
    #: phrase -> {"text": {language: text}} for clips that could not be built; the loader
    #: speaks these with live TTS.
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Named LiveKit engines the clips were rendered with, so live speech can be built from
    #: the same entry and leveled to the clips (see :class:`EngineRecord`).
    engines: Mapping[str, EngineRecord] = field(default_factory=dict)
    #: Clip entries the schema refused (never serialized): see :func:`validate`.
    refused: tuple[Refused, ...] = ()

    def by_key(self) -> dict[str, ClipEntry]:
        return {c.key: c for c in self.clips}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "built_at": self.built_at,
            "generator": self.generator,
            "default_language": self.default_language,
            "languages": list(self.languages),
            "phrases": list(self.phrases),
            "texts": {p: dict(t) for p, t in self.texts.items()},
            "clips": [c.to_json() for c in self.clips],
            **({"engines": {n: e.to_json() for n, e in self.engines.items()}}
               if self.engines else {}),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: Any, *, source: str = MANIFEST_NAME) -> Manifest:
        """Validate decoded JSON against the schema (see :func:`validate`)."""
        return validate(data, source=source)


# -- the schema -------------------------------------------------------------------------------
#
# Everything read from manifest.json passes through here before any field is used: a reader
# past this point sees typed, finite, in-range values and relative paths that stay inside the
# store. A bad clip is *refused* (kept aside with its one-line problem, its words still known
# for live TTS); a bad top level refuses the whole manifest (StoreError).

#: manifest.json larger than this is refused before it is read (a 1,000-clip bank is ~1.5 MB).
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
#: JSON nesting deeper than this is refused before decoding (the format nests 5 levels).
MAX_DEPTH = 32
#: Integers longer than this many digits are out of range for every field (and would cost
#: quadratic time to convert).
_MAX_INT_DIGITS = 19
_MAX_STR = 100_000
_MAX_LIST = 100_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIX = "rebuild with 'greetkit build --force'"


class _Bad(Exception):
    """One schema violation (internal): becomes a refused clip or a StoreError."""


class _TooBig:
    """An integer literal with more digits than any field allows (kept as text)."""

    __slots__ = ("digits",)

    def __init__(self, digits: str) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"{self.digits[:12]}... ({len(self.digits)} digits)"


def _parse_int(text: str) -> int | _TooBig:
    return int(text) if len(text.lstrip("-")) <= _MAX_INT_DIGITS else _TooBig(text)


def _show(value: Any) -> str:
    """A short description of a bad value for a message."""
    if value is None:
        return "null (or missing)"
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "an integer", float: "a number"}.get(type(value), "a number")
    text = repr(value)
    return f"{kind} {text[:40] + '...' if len(text) > 40 else text}"


def _str(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{name}: expected a string, got {_show(value)}")
    if not value and not empty:
        raise _Bad(f"{name}: is empty")
    if len(value) > _MAX_STR:
        raise _Bad(f"{name}: {len(value)} characters (at most {_MAX_STR})")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad(f"{name}: holds a lone surrogate (not text)") from None
    return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, _TooBig):
        raise _Bad(f"{name}: {value!r} is out of range ({lo}..{hi})")
    if type(value) is not int:  # bool is an int subclass: refused too
        raise _Bad(f"{name}: expected an integer, got {_show(value)}")
    if not lo <= value <= hi:
        raise _Bad(f"{name}: {value} is out of range ({lo}..{hi})")
    return value


def _float(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, _TooBig):
        raise _Bad(f"{name}: {value!r} is out of range ({lo:g}..{hi:g})")
    if type(value) not in (int, float):
        raise _Bad(f"{name}: expected a number, got {_show(value)}")
    if not lo <= value <= hi:  # also false for NaN
        raise _Bad(f"{name}: {value!r} is out of range ({lo:g}..{hi:g})")
    return float(value)


def _bool(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise _Bad(f"{name}: expected true or false, got {_show(value)}")
    return value


def path_problem(rel: str) -> str | None:
    """Why ``rel`` is not a store-relative clip path, or None: the one rule for the text of
    a path (:class:`greetkit.store.StorePaths` adds the filesystem's part, symlinks).

    >>> path_problem("clips/a.wav") is None, path_problem("clips/../../x.wav")
    (True, 'leaves the store or is not normalized')
    """
    if not rel:
        return "is empty"
    if len(rel) > 1024:
        return f"is {len(rel)} characters long"
    if any(ord(ch) < 32 or ch == "\x7f" for ch in rel):
        return "holds a control character"
    if "\\" in rel:
        return "uses '\\' (the store uses '/')"
    if rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
        return "is absolute: it leaves the store"
    parts = rel.split("/")
    if ".." in parts or "." in parts or "" in parts:
        return "leaves the store or is not normalized"
    return None


def _path(value: Any, name: str) -> str:
    """A store-relative clip path (see :func:`path_problem`)."""
    rel = _str(value, name)
    problem = path_problem(rel)
    if problem is not None:
        raise _Bad(f"{name}: path {rel[:60]!r} {problem}")
    return rel


def _sha(value: Any, name: str) -> str:
    digest = _str(value, name)
    if not _SHA256.fullmatch(digest):
        raise _Bad(f"{name}: {digest[:70]!r} is not a sha256 hex digest")
    return digest


def _strs(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Bad(f"{name}: expected a list of strings, got {_show(value)}")
    if len(value) > _MAX_LIST:
        raise _Bad(f"{name}: {len(value)} items (at most {_MAX_LIST})")
    return tuple(_str(v, f"{name}[{i}]", empty=True) for i, v in enumerate(value))


_RATE = (1000, 768_000)
_DB = (-1000.0, 1000.0)
_BYTES = (1, 2**32)  # RIFF sizes are 32-bit
_SAMPLES = (0, 2**31)
_OFFSET = (12, 2**32)


def _variant(data: Any, name: str) -> Variant:
    if not isinstance(data, dict):
        raise _Bad(f"{name}: expected an object, got {_show(data)}")
    g = data.get
    return Variant(
        sample_rate=_int(g("sample_rate"), f"{name}.sample_rate", *_RATE),
        file=_path(g("file"), f"{name}.file"),
        sha256=_sha(g("sha256"), f"{name}.sha256"),
        bytes=_int(g("bytes"), f"{name}.bytes", *_BYTES),
        data_offset=_int(g("data_offset"), f"{name}.data_offset", *_OFFSET),
        samples=_int(g("samples"), f"{name}.samples", *_SAMPLES),
        lufs=_float(g("lufs"), f"{name}.lufs", *_DB),
        true_peak_db=_float(g("true_peak_db"), f"{name}.true_peak_db", *_DB),
    )


_TARGET = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*")


def _engines(value: Any) -> dict[str, EngineRecord]:
    """The top-level ``engines`` record: name -> :class:`EngineRecord`, every field checked."""
    if not isinstance(value, dict):
        raise _Bad(f"engines: expected an object, got {_show(value)}")
    records: dict[str, EngineRecord] = {}
    for name, data in value.items():
        where = f"engines.{_str(name, 'engines: engine name'):.40}"
        if not isinstance(data, dict):
            raise _Bad(f"{where}: expected an object, got {_show(data)}")
        g = data.get
        target = _str(g("livekit"), f"{where}.livekit")
        if not _TARGET.fullmatch(target):
            raise _Bad(f"{where}.livekit: {target[:60]!r} is not 'module:callable'")
        options = g("options", {})
        if not isinstance(options, dict):
            raise _Bad(f"{where}.options: expected an object, got {_show(options)}")
        for key in options:
            _str(key, f"{where}.options: option name")
        records[name] = EngineRecord(
            livekit=target, options=options,
            plugin=_str(g("plugin"), f"{where}.plugin"),
            lufs=_float(g("lufs"), f"{where}.lufs", *_DB))
    return records


def _clip(data: Any) -> ClipEntry:
    """One clip entry, every field checked (a missing field reads as null: refused)."""
    if not isinstance(data, dict):
        raise _Bad(f"expected an object, got {_show(data)}")
    g = data.get
    variants = g("variants", [])
    if not isinstance(variants, list) or len(variants) > 64:
        raise _Bad(f"variants: expected a list of at most 64 objects, got {_show(variants)}")
    reason = g("draft_reason")
    return ClipEntry(
        key=_str(g("key"), "key"),
        phrase=_str(g("phrase"), "phrase"),
        language=_str(g("language"), "language"),
        text=_str(g("text"), "text", empty=True),
        engine=_str(g("engine"), "engine", empty=True),
        voice=_str(g("voice"), "voice", empty=True),
        preferred_engine=_str(g("preferred_engine"), "preferred_engine", empty=True),
        draft=_bool(g("draft"), "draft"),
        draft_reason=None if reason is None else _str(reason, "draft_reason", empty=True),
        engine_version=(None if g("engine_version") is None
                        else _str(g("engine_version"), "engine_version", empty=True)),
        content_key=_str(g("content_key"), "content_key", empty=True),
        file=_path(g("file"), "file"),
        sha256=_sha(g("sha256"), "sha256"),
        bytes=_int(g("bytes"), "bytes", *_BYTES),
        data_offset=_int(g("data_offset"), "data_offset", *_OFFSET),
        sample_rate=_int(g("sample_rate"), "sample_rate", *_RATE),
        channels=_int(g("channels"), "channels", 1, 64),
        samples=_int(g("samples"), "samples", *_SAMPLES),
        duration=_float(g("duration"), "duration", 0.0, 2.0**31),
        lufs=_float(g("lufs"), "lufs", *_DB),
        true_peak_db=_float(g("true_peak_db"), "true_peak_db", *_DB),
        target_lufs=_float(g("target_lufs"), "target_lufs", *_DB),
        true_peak_ceiling_db=_float(g("true_peak_ceiling_db"), "true_peak_ceiling_db", *_DB),
        gain_db=_float(g("gain_db"), "gain_db", *_DB),
        limiter_db=_float(g("limiter_db"), "limiter_db", *_DB),
        warnings=_strs(g("warnings", []), "warnings"),
        variants=tuple(_variant(v, f"variants[{i}]") for i, v in enumerate(variants)),
    )


@dataclass(frozen=True)
class Refused:
    """A clip entry the schema refused: where it was, why, and what is still known of it
    (its words, when those fields are sound, so live TTS can say them)."""

    #: Its key when that is a sound string, else its position (``clips[3]``).
    key: str
    #: One line: ``<manifest>: clips[3] (en_default): samples: expected an integer ...``.
    problem: str
    phrase: str | None = None
    language: str | None = None
    text: str | None = None


def _refusal(data: Any, index: int, problem: str, source: str) -> Refused:
    def sound(name: str) -> str | None:
        try:
            return _str(data.get(name), name) if isinstance(data, dict) else None
        except _Bad:
            return None

    key = sound("key")
    where = f"clips[{index}]" + (f" ({key})" if key else "")
    return Refused(key=key or f"clips[{index}]",
                   problem=f"{source}: {where}: {problem}; the clip is refused, {_FIX}",
                   phrase=sound("phrase"), language=sound("language"), text=sound("text"))


def validate(data: Any, *, source: str = MANIFEST_NAME) -> Manifest:
    """Check decoded manifest JSON against the schema; the one place fields are trusted.

    A bad top level (not an object, unknown ``format``, ``version`` not a sane integer,
    ``clips`` not a list ...) raises :class:`StoreError` with one line naming the field. A bad
    clip (a field of the wrong type, out of range, a path leaving the store, a duplicate key)
    is left out of :attr:`Manifest.clips` and listed in :attr:`Manifest.refused`.

    >>> validate({"format": 1, "version": "7"})  # doctest: +SKIP
    StoreError: manifest.json: version: expected an integer, got a string '7'; ...
    """
    if not isinstance(data, dict):
        raise StoreError(f"{source}: manifest is not a JSON object; {_FIX}")
    fmt = data.get("format")
    if type(fmt) is not int or fmt != FORMAT:
        raise StoreError(
            f"{source}: manifest format {fmt!r:.40} is not supported by this greetkit "
            f"(reads format {FORMAT}); upgrade greetkit or rebuild the bank"
        )
    try:
        g = data.get
        raw_texts = g("texts", {})
        if not isinstance(raw_texts, dict):
            raise _Bad(f"texts: expected an object, got {_show(raw_texts)}")
        texts: dict[str, dict[str, str]] = {}
        for phrase, by_lang in raw_texts.items():
            where = f"texts.{_str(phrase, 'texts: phrase name'):.40}"
            if not isinstance(by_lang, dict):
                raise _Bad(f"{where}: expected an object, got {_show(by_lang)}")
            texts[phrase] = {_str(lang, f"{where}: language name"):
                             _str(t, f"{where}.{lang:.20}", empty=True)
                             for lang, t in by_lang.items()}
        clips_raw = g("clips")
        if not isinstance(clips_raw, list):
            raise _Bad(f"clips: expected a list, got {_show(clips_raw)}")
        version = _int(g("version"), "version", 0, 2**53)
        built_at = _str(g("built_at"), "built_at", empty=True)
        generator = _str(g("generator", ""), "generator", empty=True)
        default_language = _str(g("default_language"), "default_language")
        languages = _strs(g("languages", []), "languages")
        phrases = _strs(g("phrases", []), "phrases")
        engines = _engines(g("engines", {}))
    except _Bad as exc:
        raise StoreError(f"{source}: manifest is malformed: {exc}; {_FIX}") from None
    clips: list[ClipEntry] = []
    refused: list[Refused] = []
    seen: set[str] = set()
    for i, raw in enumerate(clips_raw):
        try:
            entry = _clip(raw)
            if entry.key in seen:
                raise _Bad(f"key: {entry.key!r} is used by an earlier clip")
        except _Bad as exc:
            refused.append(_refusal(raw, i, str(exc), source))
            continue
        seen.add(entry.key)
        clips.append(entry)
    return Manifest(version=version, built_at=built_at, generator=generator,
                    default_language=default_language, languages=languages,
                    phrases=phrases, texts=texts, clips=tuple(clips), engines=engines,
                    refused=tuple(refused))


# Unrolled ("normal* (special normal*)*"): about 3x faster than an alternation per character.
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]+")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text, outside strings.

    Scanned before decoding: the decoder recurses once per level and would raise
    RecursionError near 1,000 levels. Regex passes keep it fast (~2 ms for a 1 MB manifest).
    """
    brackets = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", raw))
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def read_json(path: Path) -> Any:
    """The decoded JSON of a manifest file, size and depth checked first.

    Raises FileNotFoundError when there is none, :class:`StoreError` for anything else:
    unreadable, larger than :data:`MAX_MANIFEST_BYTES`, nested deeper than :data:`MAX_DEPTH`,
    or not JSON. Integers too long for any field decode as an out-of-range marker.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"{path}: cannot read manifest ({exc.strerror})") from exc
    try:
        with open(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(MAX_MANIFEST_BYTES + 1) if size <= MAX_MANIFEST_BYTES else b""
    except OSError as exc:
        raise StoreError(f"{path}: cannot read manifest ({exc.strerror})") from exc
    if size > MAX_MANIFEST_BYTES:
        raise StoreError(f"{path}: manifest is {size} bytes, more than the "
                         f"{MAX_MANIFEST_BYTES} a greetkit manifest can be; {_FIX}")
    if len(raw) > MAX_MANIFEST_BYTES:  # grew while being read, or not a regular file
        raise StoreError(f"{path}: manifest is larger than {MAX_MANIFEST_BYTES} bytes; {_FIX}")
    depth = json_depth(raw)
    if depth > MAX_DEPTH:
        raise StoreError(f"{path}: manifest nests {depth} levels deep (a manifest has at "
                         f"most {MAX_DEPTH}); {_FIX}")
    try:
        return json.loads(raw, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise StoreError(f"{path}: manifest is not valid JSON ({exc}); {_FIX}") from None


def read_manifest(directory: Path, *, version: int | None = None) -> Manifest | None:
    """Read and validate ``directory/manifest.json`` (or published ``version``'s
    ``manifests/<version>.json``); None when there is none yet.

    Raises :class:`StoreError` (one line naming the file and the fix) when the file cannot
    be read, is too large or too deep, is not JSON, or its top level is not a format-1
    manifest. Bad clips do not raise: they are in :attr:`Manifest.refused`.
    """
    path = directory / (MANIFEST_NAME if version is None
                        else f"{MANIFESTS_DIR}/{version_name(version)}")
    try:
        data = read_json(path)
    except FileNotFoundError:
        return None
    return validate(data, source=str(path))


def clip_keys(clips: Sequence[ClipEntry]) -> list[str]:
    return [c.key for c in clips]
