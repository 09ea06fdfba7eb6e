"""voices.yaml's schema, declared as data: every section, its keys, their kinds, defaults
and meaning. :data:`VOICES_YAML` checks a parsed document into a :class:`Document`; what a
value means for a clip (which engine, voice and text it gets) is decided afterwards, in
:mod:`greetkit.resolve`.

Keys that name other things (an engine under ``voices:``, a language under a phrase) are
checked here against what is known at that point, which is why ``engines:`` is checked first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from greetkit.spec.document import Path_
from greetkit.spec.fields import (
    EMPTY,
    INHERIT,
    Context,
    Delivery,
    EngineName,
    Flag,
    Kind,
    LoudnessKind,
    LoudnessSetting,
    MapOf,
    Option,
    Rates,
    Section,
    Stringified,
    Text,
    Value,
    engine_key,
)
from greetkit.spec.model import (
    BASE_RATE,
    DRAFT_ENGINE,
    MAX_TEXT_CHARS,
    SCHEMA_VERSION,
    normalize_language,
)

# \Z, not $: '$' also matches before a trailing newline, and these names become file names.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,47}\Z")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}\Z")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_PERCENT = re.compile(r"^[+-]\d{1,3}%\Z")
_HZ = re.compile(r"^[+-]\d{1,3}Hz\Z")

# -- what a checked document holds --------------------------------------------------------


class _Delivered:
    """A value with edge-tts style delivery keys (``rate``, ``pitch``, ``volume``)."""

    rate: str | None
    pitch: str | None
    volume: str | None

    @property
    def delivery(self) -> dict[str, str]:
        """The delivery keys written, as engine options."""
        given = (("rate", self.rate), ("pitch", self.pitch), ("volume", self.volume))
        return {name: value for name, value in given if value is not None}


@dataclass(frozen=True)
class Defaults:
    """The ``defaults:`` section."""

    given: frozenset[str]
    engine: str
    language: str | None
    loudness: LoudnessSetting
    sample_rates: tuple[int, ...]


@dataclass(frozen=True)
class LanguageDecl(_Delivered):
    """One language of the ``languages:`` section, as written."""

    given: frozenset[str]
    voices: Mapping[str, str]
    rate: str | None
    pitch: str | None
    volume: str | None
    engine: str | None


@dataclass(frozen=True)
class Entry(_Delivered):
    """One clip's text and settings as written (a phrase's language, or the fallback)."""

    given: frozenset[str]
    text: str | None = None
    template: str | None = None
    engine: str | None = None
    voice: str | None = None
    recording: str | None = None
    loudness: LoudnessSetting = INHERIT
    rate: str | None = None
    pitch: str | None = None
    volume: str | None = None
    allow_outside: bool = False
    #: The fallback's language (phrases name it by their key).
    language: str | None = None


@dataclass(frozen=True)
class PhraseDecl:
    """One phrase of the ``phrases:`` section, as written."""

    given: frozenset[str]
    engine: str | None
    loudness: LoudnessSetting
    template: str | None
    languages: tuple[str, ...] | None
    #: Language code -> its entry (None when the entry is unusable; the issue is recorded).
    entries: Mapping[str, Entry | None]


@dataclass(frozen=True)
class Document:
    """A voices.yaml whose every value has the right kind (cross-references come later)."""

    given: frozenset[str]
    engines: Mapping[str, Any]
    version: Any
    defaults: Defaults
    variables: Mapping[str, Any]
    languages: Mapping[str, LanguageDecl]
    phrases: Mapping[str, PhraseDecl]
    fallback: Entry | None


# -- kinds particular to voices.yaml --------------------------------------------------------


class Version(Kind):
    def check(self, value: Any, path: Path_, ctx: Context) -> Any:
        if value != SCHEMA_VERSION:
            ctx.doc.error(path, f"schema version {value!r} is not supported; "
                          f"write 'version: {SCHEMA_VERSION}'")
        return value


class TemplateName(Kind):
    def check(self, value: Any, path: Path_, ctx: Context) -> str | None:
        name = Text().check(value, path, ctx)
        if name == "":
            ctx.doc.error(path, "template name is empty; name a file in templates/, e.g. "
                          "'template: greeting.j2'")
            return None
        return name


class LanguageList(Kind):
    def check(self, value: Any, path: Path_, ctx: Context) -> tuple[str, ...]:
        if not isinstance(value, list):
            ctx.doc.error(path, "expected a list of language codes")
            return ()
        return tuple(str(code) for code in value)


class Variable(Kind):
    def check(self, value: Any, path: Path_, ctx: Context) -> Any:
        if isinstance(value, (dict, list)) or value is None:
            ctx.doc.error(path, "a variable must be text or a number")
        elif len(str(value)) > MAX_TEXT_CHARS:
            # Templates may repeat a variable; a short cap keeps that bounded too.
            ctx.doc.error(path, f"value is {len(str(value))} characters; keep it under "
                          f"{MAX_TEXT_CHARS}")
        return value


class PhraseEntry(Kind):
    """A phrase's text in one language: ``en: Hello!`` or ``en: {text|template, ...}``."""

    def check(self, value: Any, path: Path_, ctx: Context) -> Entry | None:
        if value is None:
            lang = path[-1]
            ctx.doc.error(path, f"no text after '{lang}:'; write it there, e.g. "
                          f"'{lang}: Hello!', or delete the line")
            return None
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = {"text": str(value)}
        return ENTRY.check(value, path, ctx)  # type: ignore[no-any-return]


class LiveKitEngineKind(Kind):
    """A named LiveKit TTS engine: the callable is imported and the options checked against
    its signature; a good one becomes a known engine name."""

    def check(self, value: Any, path: Path_, ctx: Context) -> Any:
        from greetkit.engines.livekit import LiveKitEngine, option_problems, resolve

        body = _LIVEKIT_ENGINE.check(value, path, ctx)
        if body.livekit is None:
            return None
        try:
            factory = resolve(body.livekit)
        except ValueError as exc:
            ctx.doc.error((*path, "livekit"), str(exc))
            return None
        for problem in option_problems(factory, body.options):
            ctx.doc.error((*path, "options"), problem)
        name = path[-1]
        if "voice" in body.options:
            ctx.doc.error((*path, "options", "voice"), "the voice is per language; write "
                          f"it as 'languages.<code>.voices.{name}: <voice>'")
        if ctx.doc.has_issue((*path, "options")) or ctx.doc.has_issue((*path, "options", "voice")):
            return None
        ctx.engines.append(name)
        return LiveKitEngine(name, body.livekit, body.options)


@dataclass(frozen=True)
class _LiveKitBody:
    given: frozenset[str]
    livekit: str | None
    options: Mapping[str, Any]


# -- names and cross-key rules --------------------------------------------------------------


def _engine_name(name: str, path: Path_, ctx: Context) -> bool:
    from greetkit.engines import BUILTIN

    if not _NAME.match(name) or name in BUILTIN:
        ctx.doc.error(path, f"engine name {name!r} is not allowed; use lowercase letters, "
                      "digits and '_', not a built-in engine's name")
        return False
    return True


def _variable_name(name: str, path: Path_, ctx: Context) -> bool:
    if not _VARIABLE.match(name):
        ctx.doc.error(path, f"{name!r} is not a valid variable name; use letters, digits and "
                      "underscores")
    return True  # still checked, and still usable by templates


def _language_code(code: str, path: Path_, ctx: Context) -> bool:
    if not _LANGUAGE.match(code):
        ctx.doc.error(path, f"{code!r} is not a language code; use a BCP 47 tag like 'en', "
                      "'zh' or 'zh-CN'")
        return False
    return True


def _phrase_name(name: str, path: Path_, ctx: Context) -> bool:
    if name == "fallback" or not _NAME.match(name):
        ctx.doc.error(path, f"phrase name {name!r} is not allowed; use lowercase letters, "
                      "digits and '_' (and not 'fallback', which has its own section)")
        return False
    return True


def _distinct_languages(languages: Mapping[str, Any], path: Path_, ctx: Context) -> None:
    # The loader (and a case-insensitive file system) would not tell them apart.
    first: dict[str, str] = {}
    for code in languages:
        seen = first.setdefault(normalize_language(code), code)
        if seen != code:
            ctx.doc.error((*path, code), f"language {code!r} is the same as {seen!r} "
                          f"(line {ctx.doc.line((*path, seen))}; language codes ignore case "
                          "and treat '-' like '_'); keep one of them")


def _text_or_template(entry: Entry, path: Path_, ctx: Context) -> bool:
    if ("text" in entry.given) == ("template" in entry.given):
        ctx.doc.error(path, "give exactly one of 'text' or 'template'")
        return False
    return True


def _languages_need_template(phrase: PhraseDecl, path: Path_, ctx: Context) -> bool:
    if "languages" in phrase.given and "template" not in phrase.given:
        ctx.doc.error((*path, "languages"), "'languages' goes with 'template'; otherwise "
                      "write one entry per language")
    return True  # the entries written are still clips


# -- the schema -----------------------------------------------------------------------------

_DELIVERY = (
    Option("rate", Delivery("rate", _PERCENT, "+10%"), doc="Speaking rate, e.g. '+10%'."),
    Option("pitch", Delivery("pitch", _HZ, "+5Hz"), doc="Pitch shift, e.g. '+5Hz'."),
    Option("volume", Delivery("volume", _PERCENT, "-10%"), doc="Volume, e.g. '-10%'."),
)

_ENTRY_OPTIONS = (
    Option("text", Text(), doc="What the clip says; ``{{ variable }}`` is filled in."),
    Option("template", TemplateName(), doc="A file in templates/ rendered instead of 'text'."),
    Option("engine", EngineName(), doc="Engine for this clip (else the language's/default)."),
    Option("voice", Stringified(), doc="Voice for this clip (else the language's voice)."),
    Option("recording", Text(), doc="A recorded take (relative to voices.yaml) instead of TTS."),
    Option("loudness", LoudnessKind(), INHERIT, doc="Preset or numbers; else the phrase's."),
    *_DELIVERY,
    Option("allow_outside", Flag(), False, doc="Allow a recording outside the project."),
)

ENTRY = Section("text settings", _ENTRY_OPTIONS, into=Entry, rules=(_text_or_template,))

FALLBACK = Section("fallback settings", (
    Option("language", Stringified(), doc="Language of the fallback clip (else the default)."),
    *_ENTRY_OPTIONS,
), into=Entry, rules=(_text_or_template,))

PHRASE = Section("language: text", (
    Option("engine", EngineName(), doc="Engine for this phrase's clips."),
    Option("loudness", LoudnessKind(), INHERIT, doc="Loudness for this phrase's clips."),
    Option("template", TemplateName(), doc="One template for every language (see 'languages')."),
    Option("languages", LanguageList(),
           doc="With 'template': only these languages (else every declared one)."),
), into=PhraseDecl, extra=PhraseEntry(), rules=(_languages_need_template,))

LANGUAGE = Section("language settings", (
    Option("voices", MapOf("engine: voice", Text(), name=engine_key), EMPTY,
           doc="The voice of each engine for this language, e.g. 'edge: en-US-AvaNeural'."),
    *_DELIVERY,
    Option("engine", EngineName(), doc="Engine for this language's clips (else the default)."),
), into=LanguageDecl)

_LIVEKIT_ENGINE = Section("engine settings", (
    Option("livekit", Text(), doc="'module:callable' returning a LiveKit TTS."),
    Option("options", MapOf("plugin options", Value()), EMPTY,
           doc="Keyword arguments for the callable (not 'voice': that is per language)."),
), into=_LiveKitBody)

DEFAULTS = Section("defaults", (
    Option("engine", EngineName(), DRAFT_ENGINE, doc="Engine of every clip unless overridden."),
    Option("language", Stringified(), doc="Default language (else the first declared)."),
    Option("loudness", LoudnessKind(), INHERIT, doc="Loudness preset or numbers for the bank."),
    Option("sample_rates", Rates(), (BASE_RATE,), doc="Extra output rates; 48 kHz always."),
), into=Defaults)

#: The whole file. ``engines`` is checked first: the other sections may name its engines.
VOICES_YAML = Section("sections", (
    Option("version", Version(), SCHEMA_VERSION, doc="Schema version; only 1."),
    Option("defaults", DEFAULTS, EMPTY, doc="Bank-wide defaults."),
    Option("variables", MapOf("variables", Variable(), name=_variable_name), EMPTY,
           doc="Values templates and texts may use as {{ name }}."),
    Option("languages", MapOf(
        "languages", LANGUAGE, name=_language_code,
        empty="no languages; declare at least one, e.g. 'en:'",
        rules=(_distinct_languages,)), EMPTY, doc="Language code -> its voices and delivery."),
    Option("phrases", MapOf("phrases", PHRASE, name=_phrase_name), EMPTY,
           required="no phrases; add a 'phrases:' section (see the README)",
           doc="Phrase name -> its text per language."),
    Option("fallback", FALLBACK, doc="The clip said when nothing else fits."),
    Option("engines", MapOf("named engines", LiveKitEngineKind(), name=_engine_name), EMPTY,
           doc="Named LiveKit TTS engines: {name: {livekit: 'module:callable', options}}."),
), into=Document, first=("engines",))
