"""Resolve: a checked voices.yaml -> the clips to render.

The schema (:mod:`greetkit.spec.schema`) says whether each value is well-formed; this step
decides what each clip *is*: its text (variables and templates rendered), its engine (the
entry's, else a recording, else the language's, else the phrase's or the default), its
voice and espeak draft voice, its delivery options, loudness and output rates. Problems
found here (an undeclared language, a missing voice, a template error, a recording that is
not there) are recorded on the same :class:`~greetkit.spec.document.Doc` as the schema's,
so :func:`greetkit.spec.load_spec` still reports every problem at once.

The build renders ``spec.clips``; report compares them with the store; preview resolves an
ad-hoc text (``greetkit preview --text``) with the same rules through :func:`audition_clip`.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greetkit.errors import SpecError, SpecIssue
from greetkit.params import DEFAULT_PRESET, LOUDNESS_PRESETS, too_long
from greetkit.spec.document import Doc, Path_
from greetkit.spec.fields import Context
from greetkit.spec.model import (
    DRAFT_ENGINE,
    MAX_CLIPS,
    MAX_RECORDING_BYTES,
    MAX_TEXT_CHARS,
    RECORDING_SUFFIXES,
    ClipSpec,
    Language,
    Loudness,
    Spec,
    clip_key,
    is_speakable,
    normalize_language,
    store_identity,
)
from greetkit.spec.schema import Document, Entry, LanguageDecl, PhraseDecl
from greetkit.suggest import did_you_mean

__all__ = ["audition_clip", "languages_of", "resolve", "text_problem"]


@dataclass(frozen=True)
class _Inherited:
    """What a phrase's clips take unless their entry says otherwise."""

    phrase: str
    engine: str
    loudness: Loudness


def resolve(document: Document, ctx: Context, path: Path, templates_dir: Path) -> Spec | None:
    """The :class:`Spec` of a checked document, or None when any issue was recorded."""
    return _Resolver(ctx, path, templates_dir, document).spec()


def languages_of(decls: Mapping[str, LanguageDecl]) -> dict[str, Language]:
    """Declared languages, each with an espeak voice (the draft voice) guessed if not given."""
    from greetkit.engines.espeak import voice_for_language

    out = {}
    for code, decl in decls.items():
        voices = dict(decl.voices)
        if DRAFT_ENGINE not in voices:
            guess = voice_for_language(code)
            if guess:
                voices[DRAFT_ENGINE] = guess
        out[code] = Language(code, voices, decl.delivery, decl.engine)
    return out


class _Resolver:
    def __init__(self, ctx: Context, path: Path, templates_dir: Path, document: Document) -> None:
        self.doc = ctx.doc
        self.path = path
        self.project_dir = path.parent
        self.document = document
        self.texts = _Texts(ctx.doc, templates_dir)
        self.only: dict[str, tuple[str, ...]] = {}
        self._checked: set[tuple[str, str]] = set()
        self.languages = languages_of(document.languages)
        self.variables = dict(document.variables)
        defaults = document.defaults
        self.loudness = defaults.loudness.over(
            Loudness(*LOUDNESS_PRESETS[DEFAULT_PRESET], DEFAULT_PRESET))
        self.default_language = self._default_language(defaults.language)

    def _default_language(self, written: str | None) -> str:
        code = written if written is not None else next(iter(self.languages), "")
        if self.languages and code not in self.languages:
            self.doc.error(("defaults", "language"), f"unknown language {code!r}; "
                           f"{did_you_mean(code, self.languages)}")
        return code

    def spec(self) -> Spec | None:
        document = self.document
        inherited = _Inherited("", document.defaults.engine, self.loudness)
        clips: list[ClipSpec] = []
        for name, phrase in document.phrases.items():
            clips += self.phrase(name, phrase, inherited)
        if "fallback" in document.given and document.fallback is not None:
            entry = document.fallback
            lang = entry.language if entry.language is not None else self.default_language
            clip = self.clip(lang, entry, ("fallback",),
                             _Inherited("fallback", inherited.engine, self.loudness))
            clips += [clip] if clip else []
        self.distinct_keys(clips)
        if len(clips) > MAX_CLIPS:
            self.doc.error(("phrases",), f"{len(clips)} clips; the limit is {MAX_CLIPS}, split "
                           "the bank into several voices.yaml files")
        if self.doc.issues:
            return None
        from greetkit.engines import declare

        declare(dict(document.engines))
        return Spec(
            path=self.path, project_dir=self.project_dir,
            default_engine=document.defaults.engine, default_language=self.default_language,
            languages=self.languages, variables=self.variables,
            phrases=tuple(document.phrases) + (
                ("fallback",) if "fallback" in document.given else ()),
            clips=tuple(clips), sample_rates=document.defaults.sample_rates,
            loudness=self.loudness, warnings=tuple(self.doc.warnings), only=dict(self.only),
        )

    def phrase(self, name: str, decl: PhraseDecl, inherited: _Inherited) -> list[ClipSpec]:
        path = ("phrases", name)
        entries: dict[str, Entry | None] = dict(decl.entries)
        if "template" in decl.given:
            wanted = decl.languages if decl.languages is not None else tuple(self.languages)
            template = Entry(frozenset({"template"}), template=decl.template)
            for lang in wanted:
                entries.setdefault(lang, template)
                # Problems with such a clip point at the 'template:' line.
                if (*path, "template") in self.doc.lines:
                    self.doc.lines.setdefault((*path, lang, "template"),
                                              self.doc.lines[(*path, "template")])
            if decl.languages is not None:
                self.only[name] = decl.languages
        if not entries:
            self.doc.error(path, "phrase has no text; add e.g. 'en: Hello!' or a 'template:'")
        scope = _Inherited(name, decl.engine or inherited.engine,
                           decl.loudness.over(inherited.loudness))
        clips = [self.clip(lang, entry, (*path, lang), scope) for lang, entry in entries.items()]
        return [c for c in clips if c is not None]

    def clip(self, lang: str, entry: Entry | None, path: Path_,
             inherited: _Inherited) -> ClipSpec | None:
        phrase = inherited.phrase
        if lang not in self.languages:
            self.doc.error(path, f"unknown language {lang!r} for phrase {phrase!r}; declare it "
                           f"under 'languages:' or {did_you_mean(lang, self.languages)}")
            return None
        if entry is None:
            return None  # its issue is recorded already
        language = self.languages[lang]
        scope = {**self.variables, "language": lang, "phrase": phrase}
        text = self.texts.of(entry, scope, path)
        engine, voice = self.engine_and_voice(entry, language, inherited.engine, path)
        if voice is None:
            return None
        options: dict[str, Any] = {**language.options, **entry.delivery}
        if engine == "recorded":
            recording = _recording(self.doc, self.project_dir, entry, path)
            if recording is None:
                return None
            options["recording"] = recording
        draft_voice = language.voices.get(DRAFT_ENGINE)
        if draft_voice and engine != DRAFT_ENGINE:
            self.check_voice(DRAFT_ENGINE, draft_voice, lang, ("languages", lang, "voices"))
        if text is None:
            return None
        return ClipSpec(
            key=clip_key(lang, phrase), phrase=phrase, language=lang, text=text, engine=engine,
            voice=voice, draft_voice=draft_voice, options=options,
            loudness=entry.loudness.over(inherited.loudness), line=self.doc.line(path),
            sample_rates=self.document.defaults.sample_rates,
        )

    def engine_and_voice(self, entry: Entry, language: Language, engine: str,
                         path: Path_) -> tuple[str, str | None]:
        """The clip's engine and voice; voice None when it has none (the issue recorded)."""
        if "recording" in entry.given:
            engine = "recorded"
        elif language.engine:
            engine = language.engine
        engine = entry.engine or engine
        voice = entry.voice if "voice" in entry.given else language.voices.get(engine, "")
        if engine == "recorded":
            return engine, voice or "human"
        if not voice:
            self.doc.error(path, f"no {engine} voice for language {language.code!r}; add "
                           f"'languages.{language.code}.voices.{engine}: <voice>'")
            return engine, None
        self.check_voice(engine, voice, language.code, path)
        return engine, voice

    def check_voice(self, engine_name: str, voice: str, language: str, path: Path_) -> None:
        from greetkit.engines import get_engine
        from greetkit.errors import GreetkitError

        if (engine_name, voice) in self._checked or engine_name in self.document.engines:
            return  # declared LiveKit engines: provider voice lists are not generic
        self._checked.add((engine_name, voice))
        declared = self.languages.get(language)
        if declared is not None and voice in declared.voices.values():
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

    def distinct_keys(self, clips: list[ClipSpec]) -> None:
        """Two clips must never share a store key. Keys compare as the loader and a
        case-insensitive file system see them ('-' and '_' alike, any case), so 'en' +
        'us_hi' and 'en_us' + 'hi', or 'zh_TW' and 'zh-tw', collide."""
        counts = Counter(normalize_language(code) for code in self.languages)
        clash = {code for code, n in counts.items() if n > 1}
        seen: dict[str, ClipSpec] = {}
        for clip in clips:
            if normalize_language(clip.language) in clash:
                continue  # already reported once for the languages
            first = seen.setdefault(store_identity(clip.key), clip)
            if first is not clip:
                self.doc.error(("phrases", clip.phrase, clip.language),
                               f"clip {clip.key!r} would share its store key with clip "
                               f"{first.key!r} (line {first.line}; keys ignore case and "
                               "treat '-' like '_'); rename the phrase or the language",
                               line=clip.line)


class _Texts:
    """Renders a clip's text or template with its variables and checks the result."""

    def __init__(self, doc: Doc, templates_dir: Path) -> None:
        self.doc = doc
        self.templates_dir = templates_dir
        self._renderer: Any = None

    def of(self, entry: Entry, scope: Mapping[str, Any], path: Path_) -> str | None:
        # An empty text reaches render(), which reports it: never a silently dropped clip.
        if "text" in entry.given:
            if entry.text is None:
                return None
            return self.render(entry.text, scope, (*path, "text"), template=False)
        if entry.template is None:
            return None
        return self.render(entry.template, scope, (*path, "template"), template=True)

    def render(self, source: str, variables: Mapping[str, Any], path: Path_, *,
               template: bool) -> str | None:
        from greetkit.phrases import PhraseError, PhraseRenderer

        if self._renderer is None:
            self._renderer = PhraseRenderer(self.templates_dir)
        try:
            if template:
                text: str = self._renderer.render_template(source, variables)
            else:
                text = self._renderer.render_string(source, variables)
        except PhraseError as exc:
            where = ""
            if exc.template:
                where = f"templates/{exc.template}" + (f":{exc.line}" if exc.line else "") + ": "
            self.doc.error(path, f"{where}{exc.message}")
            return None
        problem = text_problem(text)
        if problem:
            self.doc.error(path, problem)
            return None
        return text


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a clip's text, or None."""
    if not text:
        return "text is empty; write what the clip should say"
    odd = next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if odd is not None:
        # NUL ends the C string an engine sees; a lone surrogate cannot be encoded into
        # the manifest. Neither belongs in a greeting.
        return f"text contains the control character U+{ord(odd):04X}; remove it"
    if not is_speakable(text):
        return (f"text {text!r} has no letters or digits, so no engine can speak it; "
                "write words")
    if len(text) > MAX_TEXT_CHARS:
        return (f"text is {len(text)} characters; greetings are short, keep it under "
                f"{MAX_TEXT_CHARS}")
    return None


def _recording(doc: Doc, project_dir: Path, entry: Entry, path: Path_) -> str | None:
    """The take's absolute path, once it is known to be inside the project (unless allowed),
    a supported format, present, and small and short enough to build."""
    raw = entry.recording
    if raw is None:
        return None
    where = (*path, "recording")
    target = (project_dir / raw).resolve()
    if not entry.allow_outside and not target.is_relative_to(project_dir.resolve()):
        doc.error(where, f"{raw!r} is outside the project; move the take next to voices.yaml "
                  "or set 'allow_outside: true'")
        return None
    if target.suffix.lower() not in RECORDING_SUFFIXES:
        doc.error(where, f"{raw!r} is not a supported recording; use "
                  + ", ".join(RECORDING_SUFFIXES))
        return None
    if not target.is_file():
        doc.error(where, f"recording {raw!r} does not exist; check the path (relative to "
                  "voices.yaml)")
        return None
    problem = _take_too_big(target, raw)
    if problem:
        doc.error(where, problem)
        return None
    return str(target)


def _take_too_big(target: Path, raw: str) -> str | None:
    # The build reads a take whole (to hash and decode it): its size is checked from the
    # file first, so a huge (or sparse) file is refused here, not in memory.
    size = target.stat().st_size
    if size > MAX_RECORDING_BYTES:
        return (f"recording {raw!r} is {size / 1e6:.0f} MB; a take may be at most "
                f"{MAX_RECORDING_BYTES // 1_000_000} MB, trim or compress it")
    # The header says how long the take is: refuse an hour-long file here, before the
    # build reads and decodes all of it.
    try:
        import soundfile as sf

        seconds = float(sf.info(str(target)).duration)
    except (RuntimeError, OSError, ValueError, TypeError):
        seconds = 0.0  # unreadable: the recorded engine names the problem at build time
    cap = too_long(seconds)
    if cap:
        return f"recording {raw!r} lasts {seconds:.0f} s; {cap}, trim the take"
    return None


# -- auditions (``greetkit preview --text``) -----------------------------------------------

def _usage(option: str, message: str) -> SpecError:
    return SpecError([SpecIssue(option, None, "", message)])


def audition_clip(text: str, spec: Spec | None, *, language: str | None = None,
                  voice: str | None = None, engine: str | None = None
                  ) -> tuple[ClipSpec, tuple[str, ...]]:
    """The clip an audition of ``text`` renders, resolved as voices.yaml (``spec``, when
    there is one) would resolve a phrase, plus notes for the listener. Raises
    :class:`SpecError` naming the option (``--text``, ``--engine``, ``--voice``) at fault."""
    from greetkit.engines import get_engine
    from greetkit.engines.espeak import voice_for_language

    lang = language or (spec.default_language if spec else "en")
    declared = spec.languages.get(lang) if spec else None
    rendered = _audition_text(text, spec, lang)
    engine_name = engine or (declared.engine if declared and declared.engine else None) or (
        spec.default_engine if spec else DRAFT_ENGINE)
    if engine_name == "recorded":
        raise _usage("--engine", "a recorded take cannot speak new text; choose a TTS engine")
    voices = dict(declared.voices) if declared else {}
    chosen = voice or voices.get(engine_name) or (
        voice_for_language(lang) if engine_name == DRAFT_ENGINE else None)
    if not chosen:
        raise _usage("--voice", f"no {engine_name} voice for language {lang!r}; pass --voice "
                     f"or declare languages.{lang}.voices.{engine_name} in voices.yaml")
    tts = get_engine(engine_name)
    problem = tts.validate_voice(chosen, lang)
    if problem and tts.offline:
        raise _usage("--voice", problem)
    clip = ClipSpec(
        key="audition", phrase="audition", language=lang, text=rendered, engine=engine_name,
        voice=chosen, draft_voice=voices.get(DRAFT_ENGINE) or voice_for_language(lang),
        options=dict(declared.options) if declared else {},
        loudness=spec.loudness if spec else Loudness(*LOUDNESS_PRESETS["speech"], "speech"))
    # An online engine's voice list goes stale, so (as in voices.yaml) only a note.
    return clip, (problem,) if problem else ()


def _audition_text(text: str, spec: Spec | None, lang: str) -> str:
    """``text`` rendered as an inline template, exactly like a phrase in voices.yaml, and
    checked as one: speakable and not too long."""
    from greetkit.phrases import PhraseError, PhraseRenderer

    variables: dict[str, Any] = dict(spec.variables) if spec else {}
    variables.update(language=lang, phrase="audition")
    templates = spec.project_dir / "templates" if spec else Path("templates")
    try:
        rendered = PhraseRenderer(templates).render_string(text, variables)
    except PhraseError as exc:
        raise _usage("--text", str(exc)) from None
    problem = text_problem(rendered)  # the rule every clip's text in voices.yaml follows
    if problem:
        raise _usage("--text", problem)
    return rendered
