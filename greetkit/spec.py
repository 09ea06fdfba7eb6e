"""voices.yaml: parse, validate once, and hand the rest of greetkit frozen dataclasses.

The loader keeps the line of every key, rejects duplicate keys and Python-object tags, and
collects *every* problem before raising one :class:`~greetkit.errors.SpecError`, each line of
which reads ``voices.yaml:14: languages.zh.voices.edge: what is wrong; how to fix``.

The schema (see the README for a commented example)::

    version: 1
    defaults: {engine, language, loudness, sample_rates}
    variables: {name: value}
    languages: {code: {voices: {engine: voice}, rate, pitch, volume, engine}}
    phrases: {name: {<language>: text | {text|template, engine, voice, recording, ...},
                     template, languages, loudness, engine}}
    fallback: {language, text | template, engine, loudness}
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from greetkit.errors import SpecError, SpecIssue
from greetkit.params import DEFAULT_PRESET as DEFAULT_PRESET
from greetkit.params import LOUDNESS_PRESETS as LOUDNESS_PRESETS
from greetkit.suggest import did_you_mean

SCHEMA_VERSION = 1
#: Output rates a variant may be built at; 48 kHz is always built.
ALLOWED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
BASE_RATE = 48000
DRAFT_ENGINE = "espeak"

# Limits that turn a runaway spec into a clear error instead of runaway work.
MAX_TEXT_CHARS = 1000
MAX_CLIPS = 500
MAX_NODES = 20000
#: Deepest nesting of mappings/lists; deeper documents (or alias chains) would exhaust the
#: recursion of the YAML composer and of the converter below.
MAX_DEPTH = 32
MAX_FILE_BYTES = 1_000_000
#: Longest clip an engine may return (seconds); longer renders fail that clip at build time.
MAX_CLIP_SECONDS = 60.0
#: Largest recorded take, in bytes: 60 s of 192 kHz stereo 32-bit audio is ~92 MB.
MAX_RECORDING_BYTES = 100_000_000

# \Z, not $: '$' also matches before a trailing newline, and these names become file names.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,47}\Z")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}\Z")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_PERCENT = re.compile(r"^[+-]\d{1,3}%\Z")
_HZ = re.compile(r"^[+-]\d{1,3}Hz\Z")
RECORDING_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

Path_ = tuple[str, ...]
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}


@dataclass(frozen=True)
class Loudness:
    """Loudness target and true-peak ceiling for a clip."""

    target_lufs: float
    true_peak_ceiling_db: float
    preset: str | None = None


@dataclass(frozen=True)
class Language:
    """A declared language: its voice per engine and delivery options."""

    code: str
    voices: Mapping[str, str]
    options: Mapping[str, str]
    engine: str | None = None


@dataclass(frozen=True)
class ClipSpec:
    """One clip to build: a phrase in a language, fully resolved."""

    key: str
    phrase: str
    language: str
    text: str
    engine: str
    voice: str
    #: espeak voice used when ``engine`` cannot be reached (a draft).
    draft_voice: str | None
    options: Mapping[str, Any]
    loudness: Loudness
    line: int | None = None


@dataclass(frozen=True)
class Spec:
    """A validated voices.yaml."""

    path: Path
    project_dir: Path
    default_engine: str
    default_language: str
    languages: Mapping[str, Language]
    variables: Mapping[str, Any]
    phrases: tuple[str, ...]
    clips: tuple[ClipSpec, ...]
    sample_rates: tuple[int, ...]
    loudness: Loudness
    warnings: tuple[SpecIssue, ...] = field(default=())
    #: Phrases written for some languages only on purpose (``languages: [...]``).
    only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def clip(self, key: str) -> ClipSpec:
        for c in self.clips:
            if c.key == key:
                return c
        raise KeyError(key)


def clip_key(language: str, phrase: str) -> str:
    """The store key of a phrase in a language: ``en_default``; the fallback is ``fallback``."""
    return "fallback" if phrase == "fallback" else f"{language}_{phrase}"


def _normalize_language(code: str) -> str:
    """A language code as the loader matches it: 'zh_TW' and 'zh-tw' are one language."""
    return code.strip().replace("_", "-").lower()


def _store_identity(key: str) -> str:
    """What must differ between two clips' keys (case-insensitive stores, '-' ~ '_')."""
    return key.casefold().replace("-", "_")


def is_speakable(text: str) -> bool:
    """True when ``text`` has at least one letter or digit (punctuation alone yields no audio)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def _one_line(text: str) -> str:
    """Escape what would break an issue's single line (a key may hold a newline or NUL)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class _Doc:
    """The parsed YAML as plain values, plus each path's line and the issues found so far."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.issues: list[SpecIssue] = []
        self.warnings: list[SpecIssue] = []
        self.nodes = 0
        # One constructor for every scalar: a new SafeLoader per scalar cost ~0.3 ms each,
        # so an alias-expanded document of MAX_NODES values took seconds to reject.
        self._constructor: yaml.constructor.SafeConstructor | None = None

    def line(self, path: Path_) -> int | None:
        for i in range(len(path), -1, -1):
            if path[:i] in self.lines:
                return self.lines[path[:i]]
        return None

    def error(self, path: Path_, message: str, *, line: int | None = None) -> None:
        self.issues.append(
            SpecIssue(self.file, line if line is not None else self.line(path),
                      _one_line(".".join(path)), _one_line(" ".join(message.split())))
        )

    def has_issue(self, path: Path_) -> bool:
        return any(i.path == _one_line(".".join(path)) for i in self.issues)

    def warn(self, path: Path_, message: str) -> None:
        self.warnings.append(SpecIssue(self.file, self.line(path), _one_line(".".join(path)),
                                       _one_line(" ".join(message.split()))))

    # -- YAML nodes to plain values, keeping lines ---------------------------------------
    def convert(self, node: yaml.Node, path: Path_) -> Any:
        if len(path) > MAX_DEPTH:  # aliases can nest deeper than the text shows
            if not self.has_issue(path[:MAX_DEPTH]):
                self.error(path[:MAX_DEPTH], f"values nest more than {MAX_DEPTH} levels deep; "
                           "flatten the document", line=node.start_mark.line + 1)
            return None
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.error(path, f"document has more than {MAX_NODES} values; keep voices.yaml "
                           "small (anchors/aliases that expand a lot are a common cause)")
            return None
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                self.error(path, f"YAML tag {node.tag!r} is not allowed; remove it",
                           line=node.start_mark.line + 1)
                return None
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.error(path, "YAML merge keys ('<<') are not supported; write the keys out",
                               line=key_node.start_mark.line + 1)
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self.error(path, "mapping keys must be plain names",
                               line=key_node.start_mark.line + 1)
                    continue
                key = str(key_node.value)
                child = (*path, key)
                if key in out:
                    self.error(child, f"duplicate key {key!r} (first at line "
                               f"{self.lines.get(child)}); keep one",
                               line=key_node.start_mark.line + 1)
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                self.error(path, f"YAML tag {node.tag!r} is not allowed; remove it",
                           line=node.start_mark.line + 1)
                return None
            return [self.convert(v, (*path, str(i))) for i, v in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                self.error(path, f"YAML tag {node.tag!r} is not allowed; write a plain value",
                           line=node.start_mark.line + 1)
                return None
            if self._constructor is None:
                self._constructor = yaml.constructor.SafeConstructor()
            try:
                return self._constructor.construct_object(node)
            except (yaml.YAMLError, ValueError, OverflowError) as exc:
                self._constructor = None  # it keeps the failed node as "in progress"
                # ValueError: an int of more than 4300 digits (Python's int/str limit).
                self.error(path, f"bad value ({exc.__class__.__name__}); write a plain value",
                           line=node.start_mark.line + 1)
                return None
        return None  # pragma: no cover - yaml has no other node kinds


def _too_deep(text: str) -> int | None:
    """The line where nesting first exceeds MAX_DEPTH, found with the (non-recursive) event
    parser so that the recursive composer never sees such a document."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    return int(event.start_mark.line) + 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return None  # compose() reports it with its line
    return None


def _parse(text: str, doc: _Doc) -> Any:
    deep = _too_deep(text)
    if deep is not None:
        doc.error((), f"values nest more than {MAX_DEPTH} levels deep; flatten the document",
                  line=deep)
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:
        # Raised for characters YAML forbids; it carries an offset, not a line.
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or b"?")
        doc.error((), f"character U+{char:04X} is not allowed in YAML; remove it",
                  line=text.count("\n", 0, exc.position) + 1)
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or "invalid YAML"
        doc.error((), f"YAML syntax error: {what}; fix the indentation or quoting", line=line)
        return None
    except yaml.YAMLError as exc:
        doc.error((), f"YAML error: {exc}; fix the syntax")
        return None
    if node is None:
        doc.error((), "file is empty; start from the README's example", line=1)
        return None
    return doc.convert(node, ())


class _Validator:
    """Walks the plain document, recording issues, and builds the frozen Spec."""

    def __init__(self, doc: _Doc, path: Path, templates_dir: Path | None) -> None:
        from greetkit.engines import engine_names

        self.doc = doc
        self.path = path
        self.project_dir = path.parent
        self.templates_dir = templates_dir or self.project_dir / "templates"
        self.engines = engine_names()
        self.only: dict[str, tuple[str, ...]] = {}
        self._renderer: Any = None
        self._checked: set[tuple[str, str]] = set()
        self.languages_voices: dict[str, Mapping[str, str]] = {}
        self.declared: dict[str, Any] = {}
        #: Normalized language codes declared twice (reported once, not once per clip).
        self.language_clash: set[str] = set()

    # -- small typed accessors --------------------------------------------------------
    def mapping(self, value: Any, path: Path_, what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.doc.error(path, f"expected a mapping of {what}, got {type(value).__name__}")
            return {}
        return value

    def known_keys(self, value: Mapping[str, Any], path: Path_, allowed: tuple[str, ...]) -> None:
        for key in value:
            if key not in allowed:
                self.doc.error((*path, key), f"unknown key {key!r}; {did_you_mean(key, allowed)}")

    def string(self, value: Any, path: Path_) -> str | None:
        if value is None and self.doc.has_issue(path):
            return None  # already reported (a rejected tag, say)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.doc.error(path, f"expected text, got {type(value).__name__}; quote the value")
            return None
        return str(value)

    def engine(self, value: Any, path: Path_) -> str | None:
        name = self.string(value, path)
        if name is not None and name not in self.engines:
            self.doc.error(path, f"unknown engine {name!r}; {did_you_mean(name, self.engines)}")
            return None
        return name

    def loudness(self, value: Any, path: Path_, default: Loudness) -> Loudness:
        if value is None:
            return default
        if isinstance(value, str):
            if value not in LOUDNESS_PRESETS:
                self.doc.error(path, f"unknown loudness preset {value!r}; "
                               f"{did_you_mean(value, LOUDNESS_PRESETS)}")
                return default
            target, ceiling = LOUDNESS_PRESETS[value]
            return Loudness(target, ceiling, value)
        m = self.mapping(value, path, "loudness settings")
        self.known_keys(m, path, ("target_lufs", "true_peak_db", "preset"))
        base = default
        if "preset" in m:
            base = self.loudness(m["preset"], (*path, "preset"), default)
        new_target = self.number(m.get("target_lufs", base.target_lufs),
                                 (*path, "target_lufs"), -40.0, -5.0)
        new_ceiling = self.number(m.get("true_peak_db", base.true_peak_ceiling_db),
                                  (*path, "true_peak_db"), -20.0, 0.0)
        if new_target is None or new_ceiling is None:
            return default
        if "target_lufs" in m or "true_peak_db" in m:
            return Loudness(new_target, new_ceiling, None)
        return base

    def number(self, value: Any, path: Path_, lo: float, hi: float) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.doc.error(path, f"expected a number between {lo:g} and {hi:g}, got {value!r}")
            return None
        if not lo <= float(value) <= hi:
            self.doc.error(path, f"{value!r} is out of range; use a number between {lo:g} and "
                           f"{hi:g}")
            return None
        return float(value)

    def delivery(self, value: Mapping[str, Any], path: Path_) -> dict[str, str]:
        """rate / pitch / volume in edge-tts's notation, shared by every engine."""
        out: dict[str, str] = {}
        for name, pattern, example in (("rate", _PERCENT, "+10%"), ("pitch", _HZ, "+5Hz"),
                                       ("volume", _PERCENT, "-10%")):
            if name in value:
                raw = value[name]
                text = str(raw)
                if isinstance(raw, bool) or not pattern.match(text):
                    self.doc.error((*path, name), f"{text!r} is not a {name}; write it like "
                                   f"{example!r}")
                else:
                    out[name] = text
        return out

    # -- templates ----------------------------------------------------------------------
    def renderer(self) -> Any:
        if self._renderer is None:
            from greetkit.phrases import PhraseRenderer

            self._renderer = PhraseRenderer(self.templates_dir)
        return self._renderer

    def render(self, source: str, variables: Mapping[str, Any], path: Path_, *,
               template: bool) -> str | None:
        from greetkit.phrases import PhraseError

        try:
            if template:
                text: str = self.renderer().render_template(source, variables)
            else:
                text = self.renderer().render_string(source, variables)
        except PhraseError as exc:
            where = ""
            if exc.template:
                where = f"templates/{exc.template}" + (f":{exc.line}" if exc.line else "") + ": "
            self.doc.error(path, f"{where}{exc.message}")
            return None
        if not text:
            self.doc.error(path, "text is empty; write what the clip should say")
            return None
        odd = next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")), None)
        if odd is not None:
            # NUL ends the C string an engine sees; a lone surrogate cannot be encoded into
            # the manifest. Neither belongs in a greeting.
            self.doc.error(path, f"text contains the control character U+{ord(odd):04X}; "
                           "remove it")
            return None
        if not is_speakable(text):
            self.doc.error(path, f"text {text!r} has no letters or digits, so no engine can "
                           "speak it; write words")
            return None
        if len(text) > MAX_TEXT_CHARS:
            self.doc.error(path, f"text is {len(text)} characters; greetings are short, keep it "
                           f"under {MAX_TEXT_CHARS}")
            return None
        return text

    # -- the whole document ------------------------------------------------------------
    def spec(self, data: Any) -> Spec | None:
        doc = self.doc
        top = self.mapping(data, (), "sections")
        self.known_keys(top, (), ("version", "defaults", "variables", "languages", "phrases",
                                  "fallback", "engines"))
        declared = self.declared = self.declared_engines(top.get("engines"))
        version = top.get("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            doc.error(("version",), f"schema version {version!r} is not supported; "
                      f"write 'version: {SCHEMA_VERSION}'")

        defaults = self.mapping(top.get("defaults"), ("defaults",), "defaults")
        self.known_keys(defaults, ("defaults",), ("engine", "language", "loudness",
                                                  "sample_rates"))
        default_engine = self.engine(defaults.get("engine", DRAFT_ENGINE),
                                     ("defaults", "engine")) or DRAFT_ENGINE
        preset = LOUDNESS_PRESETS[DEFAULT_PRESET]
        loudness = self.loudness(defaults.get("loudness"), ("defaults", "loudness"),
                                 Loudness(*preset, DEFAULT_PRESET))
        rates = self.sample_rates(defaults.get("sample_rates"), ("defaults", "sample_rates"))

        variables = self.mapping(top.get("variables"), ("variables",), "variables")
        for name, value in variables.items():
            if not _VARIABLE.match(name):
                doc.error(("variables", name), f"{name!r} is not a valid variable name; use "
                          "letters, digits and underscores")
            if isinstance(value, (dict, list)) or value is None:
                doc.error(("variables", name), "a variable must be text or a number")
            elif len(str(value)) > MAX_TEXT_CHARS:
                # Templates may repeat a variable; a short cap keeps that bounded too.
                doc.error(("variables", name), f"value is {len(str(value))} characters; keep "
                          f"it under {MAX_TEXT_CHARS}")

        languages = self.languages(top.get("languages"), default_engine)
        default_language = str(defaults.get("language", next(iter(languages), "")))
        if languages and default_language not in languages:
            doc.error(("defaults", "language"), f"unknown language {default_language!r}; "
                      f"{did_you_mean(default_language, languages)}")

        phrases_raw = self.mapping(top.get("phrases"), ("phrases",), "phrases")
        if not phrases_raw and "phrases" not in top:
            doc.error(("phrases",), "no phrases; add a 'phrases:' section (see the README)")
        clips: list[ClipSpec] = []
        for phrase, body in phrases_raw.items():
            clips += self.phrase(phrase, body, languages, variables, default_engine, loudness)
        if "fallback" in top:
            clips += self.fallback(top["fallback"], languages, variables, default_engine,
                                   loudness, default_language)
        self.distinct_keys(clips)
        if len(clips) > MAX_CLIPS:
            doc.error(("phrases",), f"{len(clips)} clips; the limit is {MAX_CLIPS}, split the "
                      "bank into several voices.yaml files")
        if doc.issues:
            return None
        from greetkit.engines import declare

        declare(declared)
        return Spec(
            path=self.path,
            project_dir=self.project_dir,
            default_engine=default_engine,
            default_language=default_language,
            languages=languages,
            variables=dict(variables),
            phrases=tuple(phrases_raw) + (("fallback",) if "fallback" in top else ()),
            clips=tuple(clips),
            sample_rates=rates,
            loudness=loudness,
            warnings=tuple(doc.warnings),
            only=dict(self.only),
        )

    def distinct_keys(self, clips: list[ClipSpec]) -> None:
        """Two clips must never share a store key. Keys compare as the loader and a
        case-insensitive file system see them ('-' and '_' alike, any case), so 'en' +
        'us_hi' and 'en_us' + 'hi', or 'zh_TW' and 'zh-tw', collide."""
        seen: dict[str, ClipSpec] = {}
        for clip in clips:
            if _normalize_language(clip.language) in self.language_clash:
                continue  # already reported once for the languages
            first = seen.setdefault(_store_identity(clip.key), clip)
            if first is not clip:
                self.doc.error(("phrases", clip.phrase, clip.language),
                               f"clip {clip.key!r} would share its store key with clip "
                               f"{first.key!r} (line {first.line}; keys ignore case and "
                               "treat '-' like '_'); rename the phrase or the language",
                               line=clip.line)

    def declared_engines(self, value: Any) -> dict[str, Any]:
        """The ``engines:`` section: named LiveKit TTS engines (``livekit: module:callable``,
        ``options:``). The callable is imported and the options checked against its signature."""
        from greetkit.engines import BUILTIN
        from greetkit.engines.livekit import LiveKitEngine, option_problems, resolve

        out: dict[str, Any] = {}
        for name, body in self.mapping(value, ("engines",), "named engines").items():
            path = ("engines", name)
            if not _NAME.match(name) or name in BUILTIN:
                self.doc.error(path, f"engine name {name!r} is not allowed; use lowercase "
                               "letters, digits and '_', not a built-in engine's name")
                continue
            body = self.mapping(body, path, "engine settings")
            self.known_keys(body, path, ("livekit", "options"))
            target = self.string(body.get("livekit"), (*path, "livekit"))
            options = self.mapping(body.get("options"), (*path, "options"), "plugin options")
            if target is None:
                continue
            try:
                factory = resolve(target)
            except ValueError as exc:
                self.doc.error((*path, "livekit"), str(exc))
                continue
            for problem in option_problems(factory, options):
                self.doc.error((*path, "options"), problem)
            if "voice" in options:
                self.doc.error((*path, "options", "voice"), "the voice is per language; write "
                               f"it as 'languages.<code>.voices.{name}: <voice>'")
            if self.doc.has_issue((*path, "options")) or self.doc.has_issue(
                    (*path, "options", "voice")):
                continue
            out[name] = LiveKitEngine(name, target, options)
            self.engines.append(name)
        return out

    def sample_rates(self, value: Any, path: Path_) -> tuple[int, ...]:
        if value is None:
            return (BASE_RATE,)
        if not isinstance(value, list):
            self.doc.error(path, "expected a list of sample rates, e.g. [48000, 24000]")
            return (BASE_RATE,)
        rates = [BASE_RATE]
        for i, rate in enumerate(value):
            if isinstance(rate, bool) or rate not in ALLOWED_RATES:
                self.doc.error((*path, str(i)), f"{rate!r} is not a supported rate; choose from "
                               + ", ".join(str(r) for r in ALLOWED_RATES))
            elif rate not in rates:
                rates.append(int(rate))
        return tuple(rates)

    def languages(self, value: Any, default_engine: str) -> dict[str, Language]:
        from greetkit.engines.espeak import voice_for_language

        raw = self.mapping(value, ("languages",), "languages")
        if not raw:
            self.doc.error(("languages",), "no languages; declare at least one, e.g. 'en:'")
        out: dict[str, Language] = {}
        normalized: dict[str, str] = {}
        for code, body in raw.items():
            path = ("languages", code)
            if not _LANGUAGE.match(code):
                self.doc.error(path, f"{code!r} is not a language code; use a BCP 47 tag like "
                               "'en', 'zh' or 'zh-CN'")
                continue
            first = normalized.setdefault(_normalize_language(code), code)
            if first != code:
                # The loader (and a case-insensitive file system) would not tell them apart.
                self.language_clash.add(_normalize_language(code))
                self.doc.error(path, f"language {code!r} is the same as {first!r} "
                               f"(line {self.doc.line(('languages', first))}; language "
                               "codes ignore case and treat '-' like '_'); keep one of them")
            body = self.mapping(body, path, "language settings")
            self.known_keys(body, path, ("voices", "rate", "pitch", "volume", "engine"))
            voices_raw = self.mapping(body.get("voices"), (*path, "voices"), "engine: voice")
            voices: dict[str, str] = {}
            for engine, voice in voices_raw.items():
                vpath = (*path, "voices", engine)
                if self.engine(engine, vpath) is None:
                    continue
                v = self.string(voice, vpath)
                if v is not None:
                    voices[engine] = v
            lang_engine = (self.engine(body["engine"], (*path, "engine"))
                           if "engine" in body else None)
            if DRAFT_ENGINE not in voices:
                guess = voice_for_language(code)
                if guess:
                    voices[DRAFT_ENGINE] = guess
            out[code] = Language(code, voices, self.delivery(body, path), lang_engine)
            self.languages_voices[code] = voices
        return out

    def check_voice(self, engine_name: str, voice: str, language: str, path: Path_) -> None:
        from greetkit.engines import get_engine
        from greetkit.errors import GreetkitError

        if (engine_name, voice) in self._checked or engine_name in self.declared:
            return  # declared LiveKit engines: provider voice lists are not generic
        self._checked.add((engine_name, voice))
        if voice in self.languages_voices.get(language, {}).values():
            path = ("languages", language, "voices", engine_name)
        try:
            engine = get_engine(engine_name)
            problem = engine.validate_voice(voice, language, project_dir=self.project_dir)
        except GreetkitError as exc:
            self.doc.warn(path, f"cannot check voice {voice!r}: {exc}")
            return
        if problem:
            # espeak's voice list ships with it, so it is authoritative; online engines' lists
            # go stale, so an unknown voice there is only a warning.
            if engine.offline:
                self.doc.error(path, problem)
            else:
                self.doc.warn(path, problem)

    def phrase(self, name: str, body: Any, languages: Mapping[str, Language],
               variables: Mapping[str, Any], default_engine: str,
               loudness: Loudness) -> list[ClipSpec]:
        path = ("phrases", name)
        if name == "fallback" or not _NAME.match(name):
            self.doc.error(path, f"phrase name {name!r} is not allowed; use lowercase letters, "
                           "digits and '_' (and not 'fallback', which has its own section)")
            return []
        body = self.mapping(body, path, "language: text")
        phrase_engine = self.engine(body["engine"], (*path, "engine")) if "engine" in body else None
        phrase_loudness = self.loudness(body.get("loudness"), (*path, "loudness"), loudness)
        template = body.get("template")
        entries: dict[str, Any] = {k: v for k, v in body.items()
                                   if k not in ("template", "languages", "loudness", "engine")}
        if template is not None:
            wanted = body.get("languages", list(languages))
            if not isinstance(wanted, list):
                self.doc.error((*path, "languages"), "expected a list of language codes")
                wanted = []
            for lang in wanted:
                entries.setdefault(str(lang), {"template": template})
                # Problems with such a clip point at the 'template:' line.
                if (*path, "template") in self.doc.lines:
                    self.doc.lines.setdefault((*path, str(lang), "template"),
                                              self.doc.lines[(*path, "template")])
            if "languages" in body:
                self.only[name] = tuple(str(lang) for lang in wanted)
        elif "languages" in body:
            self.doc.error((*path, "languages"), "'languages' goes with 'template'; otherwise "
                           "write one entry per language")
        if not entries:
            self.doc.error(path, "phrase has no text; add e.g. 'en: Hello!' or a 'template:'")
        clips = []
        for lang, entry in entries.items():
            clip = self.clip(name, lang, entry, (*path, lang), languages, variables,
                             phrase_engine or default_engine, phrase_loudness)
            if clip:
                clips.append(clip)
        return clips

    def fallback(self, body: Any, languages: Mapping[str, Language],
                 variables: Mapping[str, Any], default_engine: str, loudness: Loudness,
                 default_language: str) -> list[ClipSpec]:
        path = ("fallback",)
        body = self.mapping(body, path, "fallback settings")
        lang = str(body.get("language", default_language))
        entry = {k: v for k, v in body.items() if k != "language"}
        clip = self.clip("fallback", lang, entry, path, languages, variables, default_engine,
                         loudness)
        return [clip] if clip else []

    def clip(self, phrase: str, lang: str, entry: Any, path: Path_,
             languages: Mapping[str, Language], variables: Mapping[str, Any],
             engine_default: str, loudness: Loudness) -> ClipSpec | None:
        if lang not in languages:
            self.doc.error(path, f"unknown language {lang!r} for phrase {phrase!r}; declare it "
                           f"under 'languages:' or {did_you_mean(lang, languages)}")
            return None
        language = languages[lang]
        if entry is None and path[0] == "phrases":
            self.doc.error(path, f"no text after '{lang}:'; write it there, e.g. "
                           f"'{lang}: Hello!', or delete the line")
            return None
        if isinstance(entry, (str, int, float)) and not isinstance(entry, bool):
            entry = {"text": str(entry)}
        entry = self.mapping(entry, path, "text settings")
        self.known_keys(entry, path, ("text", "template", "engine", "voice", "recording",
                                      "loudness", "rate", "pitch", "volume", "allow_outside"))
        if ("text" in entry) == ("template" in entry):
            self.doc.error(path, "give exactly one of 'text' or 'template'")
            return None
        scope = {**variables, "language": lang, "phrase": phrase}
        if "text" in entry:
            source = self.string(entry["text"], (*path, "text"))
            # An empty text reaches render(), which reports it: never a silently dropped clip.
            text = (self.render(source, scope, (*path, "text"), template=False)
                    if source is not None else None)
        else:
            source = self.string(entry["template"], (*path, "template"))
            if source == "":
                self.doc.error((*path, "template"), "template name is empty; name a file in "
                               "templates/, e.g. 'template: greeting.j2'")
                source = None
            text = (self.render(source, scope, (*path, "template"), template=True)
                    if source is not None else None)
        engine = engine_default
        if "recording" in entry:
            engine = "recorded"
        elif language.engine:
            engine = language.engine
        if "engine" in entry:
            engine = self.engine(entry["engine"], (*path, "engine")) or engine
        options: dict[str, Any] = {**language.options, **self.delivery(entry, path)}
        voice = str(entry.get("voice", language.voices.get(engine, "")))
        if engine == "recorded":
            recording = self.recording(entry, path)
            if recording is None:
                return None
            options["recording"] = recording
            voice = voice or "human"
        elif not voice:
            self.doc.error(path, f"no {engine} voice for language {lang!r}; add "
                           f"'languages.{lang}.voices.{engine}: <voice>'")
            return None
        else:
            self.check_voice(engine, voice, lang, path)
        draft_voice = language.voices.get(DRAFT_ENGINE)
        if draft_voice and DRAFT_ENGINE in language.voices and engine != DRAFT_ENGINE:
            self.check_voice(DRAFT_ENGINE, draft_voice, lang, ("languages", lang, "voices"))
        if text is None:
            return None
        return ClipSpec(
            key=clip_key(lang, phrase),
            phrase=phrase,
            language=lang,
            text=text,
            engine=engine,
            voice=voice,
            draft_voice=draft_voice,
            options=options,
            loudness=self.loudness(entry.get("loudness"), (*path, "loudness"), loudness),
            line=self.doc.line(path),
        )

    def recording(self, entry: Mapping[str, Any], path: Path_) -> str | None:
        raw = self.string(entry["recording"], (*path, "recording"))
        if raw is None:
            return None
        target = (self.project_dir / raw).resolve()
        allow_outside = entry.get("allow_outside") is True
        if not allow_outside and not target.is_relative_to(self.project_dir.resolve()):
            self.doc.error((*path, "recording"), f"{raw!r} is outside the project; move the take "
                           "next to voices.yaml or set 'allow_outside: true'")
            return None
        if target.suffix.lower() not in RECORDING_SUFFIXES:
            self.doc.error((*path, "recording"), f"{raw!r} is not a supported recording; use "
                           + ", ".join(RECORDING_SUFFIXES))
            return None
        if not target.is_file():
            self.doc.error((*path, "recording"), f"recording {raw!r} does not exist; check the "
                           "path (relative to voices.yaml)")
            return None
        # The build reads a take whole (to hash and decode it): its size is checked from the
        # file first, so a huge (or sparse) file is refused here, not in memory.
        size = target.stat().st_size
        if size > MAX_RECORDING_BYTES:
            self.doc.error((*path, "recording"), f"recording {raw!r} is {size / 1e6:.0f} MB; "
                           f"a take may be at most {MAX_RECORDING_BYTES // 1_000_000} MB, trim "
                           "or compress it")
            return None
        # The header says how long the take is: refuse an hour-long file here, before the
        # build reads and decodes all of it.
        try:
            import soundfile as sf

            seconds = float(sf.info(str(target)).duration)
        except (RuntimeError, OSError, ValueError, TypeError):
            seconds = 0.0  # unreadable: the recorded engine names the problem at build time
        if seconds > MAX_CLIP_SECONDS:
            self.doc.error((*path, "recording"), f"recording {raw!r} lasts {seconds:.0f} s; a "
                           f"clip may last at most {MAX_CLIP_SECONDS:g} s, trim the take")
            return None
        return str(target)


def load_spec(path: Path | str = "voices.yaml", *, templates_dir: Path | None = None) -> Spec:
    """Read and validate a voices.yaml; raise :class:`SpecError` listing every problem.

    >>> spec = load_spec("voices.yaml")  # doctest: +SKIP
    >>> [c.key for c in spec.clips]  # doctest: +SKIP
    ['en_default', 'zh_default', 'en_child_friendly', 'fallback']
    """
    path = Path(path)
    name = str(path) if not path.is_absolute() else path.name
    doc = _Doc(name)
    too_big = SpecError([SpecIssue(name, None, "", f"file is larger than {MAX_FILE_BYTES} "
                                   "bytes; voices.yaml should be small")])
    try:
        # The size is checked before reading, and at most the cap is read: a link to
        # /dev/zero or a FIFO reports size 0 but must not be read without end.
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                raise too_big
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([SpecIssue(name, None, "", "file not found; run greetkit in the "
                                   "directory of voices.yaml or pass -c PATH")]) from None
    except IsADirectoryError:
        raise SpecError([SpecIssue(name, None, "", "is a directory; pass the voices.yaml "
                                   "file")]) from None
    except OSError as exc:
        raise SpecError([SpecIssue(name, None, "", f"cannot read ({exc.strerror})")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise too_big
    try:
        # Newlines translated as text mode would (line numbers count '\n' only).
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError([SpecIssue(name, line, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                                   f"at column {column}); save the file as UTF-8")]) from None
    data = _parse(text, doc)
    spec = None
    if data is not None and doc.nodes <= MAX_NODES:
        # Validate even after structural problems (duplicate keys ...): all errors at once.
        # Not past the node cap: values after it are missing, so a section would be
        # reported empty or absent when it is not.
        spec = _Validator(doc, path, templates_dir).spec(data)
    if doc.issues or spec is None:
        # A broken template fails once, not once per language that uses it.
        unique = {(i.line, i.message): i for i in doc.issues}
        raise SpecError(sorted(unique.values(), key=lambda i: (i.line or 0)))
    return spec
