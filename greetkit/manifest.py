"""``greetings/manifest.json``: the index of a built greeting bank.

The manifest is the only file readers trust. It names every clip, the immutable WAV holding
its bytes, and that file's checksum. The build writes it last and atomically, so a reader sees
either the old bank or the new one, never a mix.

Format 2 (documented in the README): every stored file of a clip, 48 kHz included, is one
entry of ``files`` keyed by its sample rate, so readers walk one shape:

.. code-block:: json

    {"format": 2, "version": 7, "built_at": "...", "generator": "greetkit 0.1.0",
     "default_language": "en", "languages": ["en", "zh"], "phrases": ["default", ...],
     "clips": [{"key": "en_default", "phrase": "default", "language": "en", "text": "...",
                "engine": "espeak", "voice": "en-us", "preferred_engine": "edge", "draft": true,
                "draft_reason": "...", "content_key": "...", "channels": 1, "duration": 2.0,
                "target_lufs": -18.0, "true_peak_ceiling_db": -1.5, "gain_db": 3.2,
                "limiter_db": 0.0, "warnings": [],
                "files": {"48000": {"file": "clips/en_default.<k>-<sha>.wav", "sha256": "...",
                                    "bytes": 192044, "data_offset": 44, "samples": 96000,
                                    "lufs": -18.0, "true_peak_db": -1.6},
                          "24000": {"file": "...", ...}}}]}

Format 1 (greetkit before the format bump) kept the 48 kHz file's fields inline in the clip
(``file``, ``sha256``, ``bytes``, ``data_offset``, ``sample_rate``, ``samples``, ``lufs``,
``true_peak_db``) and the other rates in a ``variants`` list. It is still read: :func:`validate`
turns it into the same :class:`ClipEntry`, so no reader sees the difference.
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

#: The manifest layout this greetkit writes. Bump on incompatible changes.
FORMAT = 2
#: Every layout it reads (format 1: the 48 kHz file inline, other rates in ``variants``).
READ_FORMATS = (1, 2)
#: The layout of the clip files themselves (mono PCM_16 WAV, named by checksum): part of every
#: content key. The manifest's :data:`FORMAT` is not: re-indexing the same bytes in a new
#: manifest layout must not make every clip stale.
CLIP_FORMAT = 1
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
class ClipFile:
    """One stored file of a clip: the clip at one output sample rate."""

    sample_rate: int
    #: Store-relative path (``clips/<key>.<ck>[.<rate>]-<sha>.wav``).
    file: str
    sha256: str
    bytes: int
    #: Byte offset of the PCM in the file (past the WAV header).
    data_offset: int
    samples: int
    #: Measured integrated loudness (BS.1770-4, LUFS) and true peak (dBTP) of this file.
    lufs: float
    true_peak_db: float

    def to_json(self) -> dict[str, Any]:
        """The file's object in format 2 (its rate is the key it is stored under)."""
        d = asdict(self)
        del d["sample_rate"]
        return d


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
    channels: int
    duration: float
    target_lufs: float
    true_peak_ceiling_db: float
    gain_db: float
    limiter_db: float
    draft_reason: str | None = None
    #: What rendered it: for a LiveKit plugin engine its distribution==version, callable and
    #: options (None in manifests written before this field).
    engine_version: str | None = None
    warnings: tuple[str, ...] = ()
    #: Every stored file, keyed by sample rate, :data:`BASE_RATE` first (the schema refuses a
    #: clip without one).
    files: Mapping[int, ClipFile] = field(default_factory=dict)

    def __hash__(self) -> int:  # ``files`` is a dict: hash what identifies the entry
        return hash((self.key, self.content_key, tuple(self.files.values())))

    @property
    def base(self) -> ClipFile:
        """The :data:`BASE_RATE` file (every clip has one)."""
        return self.files[BASE_RATE]

    @property
    def lufs(self) -> float:
        """The clip's measured loudness (of its :data:`BASE_RATE` file; every rate is leveled
        to the same target)."""
        return self.base.lufs

    @property
    def true_peak_db(self) -> float:
        """The true peak of the :data:`BASE_RATE` file, dBTP."""
        return self.base.true_peak_db

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "files"}
        d["warnings"] = list(self.warnings)
        d["files"] = {str(rate): f.to_json() for rate, f in self.files.items()}
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
    #: The layout it was read in (:data:`READ_FORMATS`); it is always written as :data:`FORMAT`.
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
            "format": FORMAT,  # written in this layout whatever format it was read from
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")


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
    if _CONTROL.search(rel):  # a regex: the loader asks this for every file it maps
        return "holds a control character"
    if "\\" in rel:
        return "uses '\\' (the store uses '/')"
    if rel.startswith("/") or _DRIVE.match(rel):
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


def _file(data: Any, name: str, rate: int) -> ClipFile:
    """One stored file's fields (``name`` prefixes the field names in messages)."""
    if not isinstance(data, dict):
        raise _Bad(f"{name}: expected an object, got {_show(data)}")
    g = data.get
    return ClipFile(
        sample_rate=rate,
        file=_path(g("file"), f"{name}file"),
        sha256=_sha(g("sha256"), f"{name}sha256"),
        bytes=_int(g("bytes"), f"{name}bytes", *_BYTES),
        data_offset=_int(g("data_offset"), f"{name}data_offset", *_OFFSET),
        samples=_int(g("samples"), f"{name}samples", *_SAMPLES),
        lufs=_float(g("lufs"), f"{name}lufs", *_DB),
        true_peak_db=_float(g("true_peak_db"), f"{name}true_peak_db", *_DB),
    )


_MAX_FILES = 64


def _files_v2(value: Any) -> dict[int, ClipFile]:
    """Format 2's ``files``: rate (a decimal string) -> file."""
    if not isinstance(value, dict) or not value or len(value) > _MAX_FILES:
        raise _Bad(f"files: expected an object of 1 to {_MAX_FILES} files keyed by sample "
                   f"rate, got {_show(value)}")
    files: dict[int, ClipFile] = {}
    for key, data in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()
                and key == str(int(key[:7])) and _RATE[0] <= int(key) <= _RATE[1]):
            raise _Bad(f"files: key {str(key)[:20]!r} is not a sample rate "
                       f"({_RATE[0]}..{_RATE[1]})")
        files[int(key)] = _file(data, f"files.{key}.", int(key))
    return _base_first(files)


def _files_v1(data: dict[str, Any]) -> dict[int, ClipFile]:
    """Format 1: the base file's fields inline in the clip, other rates in ``variants``."""
    g = data.get
    rate = _int(g("sample_rate"), "sample_rate", *_RATE)
    files = {rate: _file(data, "", rate)}
    variants = g("variants", [])
    if not isinstance(variants, list) or len(variants) > _MAX_FILES:
        raise _Bad(f"variants: expected a list of at most {_MAX_FILES} objects, got "
                   f"{_show(variants)}")
    for i, v in enumerate(variants):
        name = f"variants[{i}]"
        if not isinstance(v, dict):
            raise _Bad(f"{name}: expected an object, got {_show(v)}")
        v_rate = _int(v.get("sample_rate"), f"{name}.sample_rate", *_RATE)
        files.setdefault(v_rate, _file(v, f"{name}.", v_rate))  # a repeated rate: first wins
    return _base_first(files)


def _base_first(files: dict[int, ClipFile]) -> dict[int, ClipFile]:
    if BASE_RATE not in files:
        have = ", ".join(str(r) for r in files)
        raise _Bad(f"files: no {BASE_RATE} Hz file (has {have}); this greetkit plays "
                   f"{BASE_RATE // 1000} kHz clips")
    return {BASE_RATE: files.pop(BASE_RATE), **files}


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


def _clip(data: Any, fmt: int = FORMAT) -> ClipEntry:
    """One clip entry of manifest format ``fmt``, every field checked (a missing field reads
    as null: refused)."""
    if not isinstance(data, dict):
        raise _Bad(f"expected an object, got {_show(data)}")
    g = data.get
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
        channels=_int(g("channels"), "channels", 1, 64),
        duration=_float(g("duration"), "duration", 0.0, 2.0**31),
        target_lufs=_float(g("target_lufs"), "target_lufs", *_DB),
        true_peak_ceiling_db=_float(g("true_peak_ceiling_db"), "true_peak_ceiling_db", *_DB),
        gain_db=_float(g("gain_db"), "gain_db", *_DB),
        limiter_db=_float(g("limiter_db"), "limiter_db", *_DB),
        warnings=_strs(g("warnings", []), "warnings"),
        files=_files_v1(data) if fmt == 1 else _files_v2(g("files")),
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
    if type(fmt) is not int or fmt not in READ_FORMATS:
        raise StoreError(
            f"{source}: manifest format {fmt!r:.40} is not supported by this greetkit "
            f"(reads formats {', '.join(map(str, READ_FORMATS))}); upgrade greetkit or "
            "rebuild the bank"
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
            entry = _clip(raw, fmt)
            if entry.key in seen:
                raise _Bad(f"key: {entry.key!r} is used by an earlier clip")
        except _Bad as exc:
            refused.append(_refusal(raw, i, str(exc), source))
            continue
        seen.add(entry.key)
        clips.append(entry)
    return Manifest(format=fmt, version=version, built_at=built_at, generator=generator,
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
    return decode_json(raw, str(path))


def decode_json(raw: bytes, source: str, *, fix: str = _FIX) -> Any:
    """The decoded JSON of manifest bytes from ``source`` (a path or URL), size and depth
    checked before decoding; :class:`StoreError` ending in ``fix`` for anything else."""
    if len(raw) > MAX_MANIFEST_BYTES:  # grew while being read, or not a regular file
        raise StoreError(f"{source}: manifest is larger than {MAX_MANIFEST_BYTES} bytes; {fix}")
    depth = json_depth(raw)
    if depth > MAX_DEPTH:
        raise StoreError(f"{source}: manifest nests {depth} levels deep (a manifest has at "
                         f"most {MAX_DEPTH}); {fix}")
    try:
        return json.loads(raw, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise StoreError(f"{source}: manifest is not valid JSON ({exc}); {fix}") from None


def read_manifest(directory: Path, *, version: int | None = None) -> Manifest | None:
    """Read and validate ``directory/manifest.json`` (or published ``version``'s
    ``manifests/<version>.json``); None when there is none yet.

    Raises :class:`StoreError` (one line naming the file and the fix) when the file cannot
    be read, is too large or too deep, is not JSON, or its top level is not a format-1 or -2
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
