"""The loader: a built bank mapped into memory, ready to play within microseconds.

:func:`load` is synchronous (LiveKit's ``prewarm`` has no event loop) and never decodes
audio. Every clip file is mapped read-only with :mod:`mmap` and its PCM exposed as a
read-only ``numpy.int16`` view at the manifest's ``data_offset``, so:

* load cost is one ``open`` + ``fstat`` + ``mmap`` + a header read per file;
* the N worker processes LiveKit keeps (and every job process forked from a process that
  loaded the bank, see :mod:`greetkit.preload`) share one copy of the audio in the page cache;
* playing a clip copies nothing but the 20 ms frame being handed to LiveKit.

Checks and the checksum policy
------------------------------
Always, at load, for each clip file: the manifest path stays inside the store (no absolute
path, no ``..``, no symlinked file or directory leading out), the file is a regular file of
exactly ``bytes`` bytes, and its RIFF/WAVE header describes mono PCM_16 at the clip's rate
with the ``data`` chunk at ``data_offset`` holding exactly ``samples`` samples.

The sha256 in the manifest is checked according to ``verify``:

* ``None`` (default): lazily, the first time a clip is played in this process (hashing a 3 s
  clip takes about a tenth of a millisecond, and a forked process inherits the result);
* ``True``: every file at load (what :mod:`greetkit.preload` does, once per server);
* ``False``: never (``greetkit verify`` checks the store offline).

A clip that fails a check is *unavailable*: it is left out of the bank with one warning, its
text stays known, and :meth:`Bank.say` speaks that text with live TTS instead. A missing,
unreadable or newer-format manifest gives an empty bank (with whatever texts could be
recovered) and one warning, unless ``strict=True``, which raises instead (for tools).

Clip files are immutable (their names carry their checksum) and never rewritten, so a build
publishing a new manifest does not disturb a loaded bank; :meth:`Bank.reload` returns a new
bank for the newest manifest and leaves this one intact.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import mmap
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from greetkit.errors import AudioError, ClipNotFound, StoreError, VerifyError
from greetkit.manifest import (
    BASE_RATE,
    MANIFEST_NAME,
    ClipEntry,
    ClipFile,
    Manifest,
    read_json,
    read_manifest,
)
from greetkit.store import StorePaths
from greetkit.suggest import suggest
from greetkit.wav import check_layout

if TYPE_CHECKING:  # pragma: no cover
    from livekit import rtc
    from livekit.agents import AgentSession
    from livekit.agents.voice import SpeechHandle

__all__ = ["BASE_RATE", "FALLBACK_PHRASE", "Bank", "Clip", "Selection", "load"]

log = logging.getLogger("greetkit")

#: The phrase (and key) of the clip played when nothing else fits.
FALLBACK_PHRASE = "fallback"

PCM = npt.NDArray[np.int16]


class _MappedFile:
    """One clip file mapped read-only, with its PCM view and checksum state.

    Shared between banks (``reload`` reuses unchanged files) and inherited by forked
    processes; nothing in it is ever written after load except the checksum verdict.
    """

    __slots__ = ("_map", "path", "pcm", "sha256", "verdict", "view")

    def __init__(self, path: str, mapped: mmap.mmap, data_offset: int, samples: int,
                 sha256: str) -> None:
        self.path = path
        self._map = mapped
        self.pcm: PCM = np.frombuffer(mapped, dtype="<i2", count=samples, offset=data_offset)
        #: The same PCM as little-endian bytes (what AudioFrames are cut from).
        self.view = memoryview(mapped)[data_offset : data_offset + 2 * samples]
        self.sha256 = sha256
        #: None until hashed, then "" when it matches or the problem.
        self.verdict: str | None = None

    def verify(self) -> str:
        """Hash the mapped bytes once; "" when they match the manifest, else the problem."""
        if self.verdict is None:
            # hashlib reads the mapping through the buffer protocol: no copy.
            digest = hashlib.sha256(self._map).hexdigest()
            name = os.path.basename(self.path)
            self.verdict = "" if digest == self.sha256 else (
                f"{name}: checksum mismatch (corrupted); run 'greetkit build --force'")
        return self.verdict


@dataclass(frozen=True, eq=False)
class Clip:
    """A playable clip: text, language and its PCM as read-only int16 views of the mapped file.

    >>> clip = bank["en_default"]  # doctest: +SKIP
    >>> clip.samples.shape, clip.sample_rate, clip.rates  # doctest: +SKIP
    ((96000,), 48000, (48000, 24000))
    """

    key: str
    phrase: str
    language: str
    text: str
    #: Rendered by the draft engine because the preferred one was unreachable.
    draft: bool
    #: The manifest entry, for anything not surfaced here (engine, voice, loudness ...).
    entry: ClipEntry
    _files: Mapping[int, _MappedFile] = field(repr=False)

    @property
    def sample_rate(self) -> int:
        """The rate of :attr:`samples` (always 48 kHz; see :meth:`pcm` for variants)."""
        return BASE_RATE

    @property
    def samples(self) -> PCM:
        """The 48 kHz mono int16 PCM: a read-only view of the mapped file, never a copy."""
        return self._files[BASE_RATE].pcm

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return int(self.samples.shape[0]) / BASE_RATE

    @property
    def rates(self) -> tuple[int, ...]:
        """Sample rates this clip can be played at without resampling (48 kHz first)."""
        return tuple(self._files)

    def pcm(self, sample_rate: int = BASE_RATE) -> PCM:
        """The PCM at ``sample_rate`` (48 kHz or a stored variant).

        Raises :class:`~greetkit.errors.AudioError` when no variant has that rate.
        """
        try:
            return self._files[sample_rate].pcm
        except KeyError:
            have = ", ".join(str(r) for r in self._files)
            raise AudioError(
                f"clip {self.key!r} has no {sample_rate} Hz variant (has {have}); add "
                f"{sample_rate} to defaults.sample_rates in voices.yaml and build again"
            ) from None

    def buffer(self, sample_rate: int = BASE_RATE) -> memoryview:
        """The PCM at ``sample_rate`` as a read-only memoryview of little-endian int16 bytes
        (a window on the mapped file)."""
        try:
            return self._files[sample_rate].view
        except KeyError:
            self.pcm(sample_rate)  # raises the explanatory AudioError
            raise

    def chunks(self, sample_rate: int, samples_per_chunk: int) -> Iterator[memoryview]:
        """Sample-exact windows of the PCM at ``sample_rate``: read-only memoryviews of
        ``samples_per_chunk`` little-endian int16 samples of the mapped file (the last one
        shorter, never padded). No copies: a framework wraps each window in its own frame
        type. Raises :class:`~greetkit.errors.AudioError` when no file has that rate and
        ``ValueError`` for a chunk length below 1.

        >>> b"".join(clip.chunks(24000, 480)) == clip.buffer(24000).tobytes()  # doctest: +SKIP
        True
        """
        if not isinstance(samples_per_chunk, int) or samples_per_chunk < 1:
            raise ValueError(f"samples_per_chunk must be a positive int, got "
                             f"{samples_per_chunk!r}")
        view = self.buffer(sample_rate)
        step = 2 * samples_per_chunk
        return (view[pos : pos + step] for pos in range(0, len(view), step))

    def verify(self, sample_rate: int | None = None) -> str:
        """Check the checksum of this clip's file at ``sample_rate`` (every file when None),
        once per process; "" when it matches, else the problem."""
        files = self._files.values() if sample_rate is None else [self._files[sample_rate]]
        for f in files:
            problem = f.verdict if f.verdict is not None else f.verify()
            if problem:
                return problem
        return ""


@dataclass(frozen=True)
class Selection:
    """What :meth:`Bank.select` chose for a phrase and language.

    ``clip`` is None when the phrase must be spoken live (no clip, its files failed a check,
    or ``GREETKIT_DISABLE``); ``text`` is then what live TTS should say (None when no text
    is known anywhere) and ``reason`` says why.
    """

    #: The phrase actually chosen (``default_morning`` when a variant won).
    phrase: str
    #: The language chosen (the clip's, or the language of the live text).
    language: str | None
    clip: Clip | None
    #: The words: the clip's text, or the text to speak live.
    text: str | None
    #: How the choice was made: exact, base, default, fallback, none or disabled.
    via: str
    #: Why the selection is live (None when a clip plays).
    reason: str | None = None
    #: The rate of the file to play: the requested rate when that file is healthy, else
    #: another healthy rate of the clip (48 kHz first); None when live.
    sample_rate: int | None = None

    @property
    def live(self) -> bool:
        """True when there is no clip to play: speak :attr:`text` with live TTS."""
        return self.clip is None

    @property
    def problem(self) -> str | None:
        """Former name of :attr:`reason`."""
        return self.reason


#: Environment variable: "1" (or true/yes/on) makes every selection live (the kill switch).
DISABLE_ENV = "GREETKIT_DISABLE"
_disabled_logged = False


def disabled() -> bool:
    """Whether the kill switch :data:`DISABLE_ENV` is on (read at every selection, so a
    rollout can flip it without a restart); logged once per process."""
    global _disabled_logged
    value = os.environ.get(DISABLE_ENV)
    if not value or value.strip().lower() not in ("1", "true", "yes", "on"):
        return False
    if not _disabled_logged:
        _disabled_logged = True
        log.warning("%s=%s: every greeting is spoken live, no clip is played",
                    DISABLE_ENV, value)
    return True


def _normalize(language: str) -> str:
    return language.strip().replace("_", "-").lower()


def _base(language: str) -> str:
    return _normalize(language).split("-", 1)[0]


class _Found(NamedTuple):
    """What selection settled on, before checking that its clip can play."""

    phrase: str
    language: str
    via: str
    entry: ClipEntry | None
    text: str


def _candidates(phrase: str, variables: Mapping[str, Any]) -> list[str]:
    """Phrase names to try, most specific first: ``default_morning``, then ``default``."""
    values = [v for v in variables.values() if isinstance(v, str) and v]
    return ([f"{phrase}_{'_'.join(values)}"] if len(values) > 1 else []) + [
        f"{phrase}_{v}" for v in values] + [phrase]


def _languages(language: str | None, default: str | None) -> list[tuple[str, str]]:
    """(via, language) in the order selection tries them: exact, base, the default's."""
    steps: list[tuple[str, str]] = []
    if language:
        steps += [("exact", _normalize(language)), ("base", _base(language))]
    if default:
        steps += [("default", _normalize(default)), ("default", _base(default))]
    return steps


def _find(entries: Mapping[tuple[str, str], ClipEntry], texts: Mapping[tuple[str, str], str],
          candidates: list[str], steps: list[tuple[str, str]]) -> _Found | None:
    """The first phrase candidate with a clip or a text, language by language."""
    for via, lang in steps:
        for p in candidates:
            entry = entries.get((p, lang))
            text = entry.text if entry is not None else texts.get((p, lang))
            if text is not None:
                return _Found(p, lang if entry is None else entry.language, via, entry, text)
    return None


def _find_fallback(entries: Mapping[tuple[str, str], ClipEntry],
                   texts: Mapping[tuple[str, str], str], phrase: str) -> _Found | None:
    """The fallback clip, in whatever language it was built (else its text alone)."""
    for (p, _lang), entry in entries.items():
        if p == FALLBACK_PHRASE:
            return _Found(phrase, entry.language, "fallback", entry, entry.text)
    for (p, lang), text in texts.items():
        if p == FALLBACK_PHRASE:
            return _Found(phrase, lang, "fallback", None, text)
    return None


class Bank(Mapping[str, Clip]):
    """A loaded greeting bank: a read-only mapping of clip key to :class:`Clip`.

    Only playable clips are items; :attr:`unavailable` lists the others with the reason, and
    their texts remain usable for live TTS. Safe to share between tasks and forked processes.
    """

    def __init__(
        self,
        root: Path,
        manifest: Manifest | None,
        clips: Mapping[str, Clip],
        *,
        unavailable: Mapping[str, str] | None = None,
        texts: Mapping[str, Mapping[str, str]] | None = None,
        default_language: str | None = None,
        problem: str | None = None,
        frame_ms: int = 20,
        verify: bool | None = None,
        load_ms: float = 0.0,
    ) -> None:
        self.root = root
        #: The manifest this bank was loaded from (None for an empty or unreadable store).
        self.manifest = manifest
        #: key -> why that clip cannot be played.
        self.unavailable: dict[str, str] = dict(unavailable or {})
        #: Why the whole bank is empty (no manifest, unreadable, newer format), or None.
        self.problem = problem
        self.frame_ms = frame_ms
        self.load_ms = load_ms
        self._verify = verify
        self._clips = dict(clips)
        self.default_language = (
            manifest.default_language if manifest is not None else default_language
        )
        # (phrase, normalized language) -> text, from every clip entry (playable or not)
        # and the manifest's texts map, so live TTS always has the right words.
        self._texts: dict[tuple[str, str], str] = {}
        for phrase, by_lang in (texts or {}).items():
            for lang, text in by_lang.items():
                self._texts[(phrase, _normalize(lang))] = text
        self._entries: dict[tuple[str, str], ClipEntry] = {}
        if manifest is not None:
            for phrase, by_lang in manifest.texts.items():
                for lang, text in by_lang.items():
                    self._texts[(phrase, _normalize(lang))] = text
            for entry in manifest.clips:
                self._entries[(entry.phrase, _normalize(entry.language))] = entry
                self._texts.setdefault((entry.phrase, _normalize(entry.language)), entry.text)

    # -- Mapping ----------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Clip:
        try:
            return self._clips[key]
        except KeyError:
            raise ClipNotFound(key, suggest(key, self._clips, n=3)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._clips)

    def __len__(self) -> int:
        return len(self._clips)

    def __repr__(self) -> str:
        version = self.manifest.version if self.manifest else None
        return (f"<greetkit.Bank {str(self.root)!r} version={version} clips={len(self)} "
                f"unavailable={len(self.unavailable)}>")

    @property
    def version(self) -> int | None:
        """The manifest version this bank holds (None when there was none)."""
        return self.manifest.version if self.manifest is not None else None

    @property
    def nbytes(self) -> int:
        """Bytes of clip files mapped (every rate)."""
        return sum(f.bytes for c in self._clips.values() for f in c.entry.files.values())

    # -- selection --------------------------------------------------------------------------
    def select(self, phrase: str, language: str | None = None, *, sample_rate: int | None = None,
               fallback_text: str | None = None, **variables: Any) -> Selection:
        """Choose what to play for ``phrase`` in ``language``. Never raises.

        The language outranks variants: the exact language (case and ``_``/``-``
        insensitive) → its base language (``zh-CN`` → ``zh``) → the bank's default language,
        and within the first language that knows the phrase, the most specific variant:
        ``select("default", "zh", time_of_day="morning")`` plays ``default_morning`` in
        Chinese when it exists, else ``default`` in Chinese, never English
        ``default_morning``. When no language knows the phrase, the ``fallback`` clip.

        ``variables`` only pick variants (``<phrase>_<value>``); they are never passed on.
        ``sample_rate`` asks for the file at that rate; the checksum policy runs for the one
        file chosen, and a bad file disables only that file (another healthy rate of the
        clip is chosen, 48 kHz first). Arguments of the wrong type count as unknown. With
        no playable clip the selection is live: ``text`` from the manifest (or voices.yaml),
        else ``fallback_text``, and ``reason`` says why.

        >>> bank.select("default", "zh-CN", sample_rate=24000).clip.key  # doctest: +SKIP
        'zh_default'
        """
        try:
            sel = self._select(phrase, language, sample_rate, variables)
        except Exception as exc:  # a bug here must never reach the agent
            log.error("selecting %r failed (a greetkit bug): %r", phrase, exc)
            sel = Selection(phrase if isinstance(phrase, str) else "", None, None, None, "none",
                            f"selection failed: {exc!r}")
        if sel.text is None and isinstance(fallback_text, str) and fallback_text.strip():
            sel = replace(sel, text=fallback_text)
        return sel

    def _select(self, phrase: Any, language: Any, sample_rate: Any,
                variables: Mapping[str, Any]) -> Selection:
        phrase = phrase if isinstance(phrase, str) else ""
        language = language if isinstance(language, str) and language.strip() else None
        rate = sample_rate if (isinstance(sample_rate, int) and not isinstance(sample_rate, bool)
                               and sample_rate > 0) else None
        found = (_find(self._entries, self._texts, _candidates(phrase, variables),
                       _languages(language, self.default_language))
                 or _find_fallback(self._entries, self._texts, phrase))
        if found is None:
            return Selection(phrase, language, None, None, "none",
                             f"the bank has no text for {phrase!r}"
                             + ("" if self.problem is None else f" ({self.problem})"))
        return self._playable_selection(found, rate)

    def _playable_selection(self, found: _Found, rate: int | None) -> Selection:
        """``found`` with its clip when one of its files may play (``rate``'s first)."""
        chosen, lang, via, entry, text = found
        if disabled():
            return Selection(chosen, lang, None, text, "disabled", f"{DISABLE_ENV} is set")
        if entry is None:
            reason = (self.problem if self.problem is not None
                      else f"no clip built for {chosen!r} in {lang!r}")
            return Selection(chosen, lang, None, text, via, reason)
        clip = self._clips.get(entry.key)
        if clip is None:
            reason = self.unavailable.get(entry.key, f"clip {entry.key!r} is not loaded")
            return Selection(chosen, lang, None, text, via, reason)
        order = ([rate] if rate is not None and rate in clip._files else []) + [
            r for r in clip._files if r != rate]
        problem = ""
        for r in order:
            bad = self._health(clip, r)
            if not bad:
                return Selection(chosen, lang, clip, text, via, None, r)
            problem = problem or bad
        return Selection(chosen, lang, None, text, via, problem)

    def _health(self, clip: Clip, rate: int) -> str:
        """The checksum policy for one file: "" when it may be played, else its problem
        (logged once per file and process)."""
        if self._verify is False:
            return ""
        f = clip._files[rate]
        if f.verdict == "":
            return ""
        if f.verdict is None and f.verify():
            log.warning("clip %r at %d Hz disabled (other rates still play): %s",
                        clip.key, rate, f.verdict)
        return f.verdict or ""

    def resolve(self, phrase: str, language: str | None = None, **variables: Any) -> Clip | None:
        """The clip to play for ``phrase`` in ``language``, or None (then speak
        :meth:`text` live). See :meth:`select` for the fallback order.

        >>> bank.resolve("default", language="zh-CN").key  # doctest: +SKIP
        'zh_default'
        """
        return self.select(phrase, language, **variables).clip

    def text(self, phrase: str, language: str | None = None, **variables: Any) -> str | None:
        """The words of the best match for ``phrase`` (even when its clip cannot play)."""
        return self.select(phrase, language, **variables).text

    # -- playing ----------------------------------------------------------------------------
    def playable(self, clip: Clip, sample_rate: int | None = None) -> str:
        """Run the checksum policy for ``clip`` (only its ``sample_rate`` file when given);
        "" when it may be played, else the problem."""
        if self._verify is False:
            return ""
        return clip.verify(sample_rate)

    def frames(self, key: str, sample_rate: int | None = None,
               frame_ms: int | None = None) -> AsyncIterator[rtc.AudioFrame]:
        """A fresh async iterator of ``livekit.rtc.AudioFrame`` for clip ``key``.

        Mono int16 at 48 kHz (or the stored ``sample_rate`` variant), ``frame_ms`` per
        frame (the last one shorter), sample-exact. Needs the ``livekit`` extra. Raises
        :class:`~greetkit.errors.StoreError` when that file fails the checksum policy.
        """
        clip = self._clips.get(key) or self[key]  # self[key] raises ClipNotFound
        rate = sample_rate or BASE_RATE
        clip.buffer(rate)  # raises the AudioError naming the rates the clip has
        bad = self._health(clip, rate)
        if bad:
            raise StoreError(f"clip {key!r} cannot be played: {bad}")
        it: AsyncIterator[rtc.AudioFrame] = _integration("greetkit.agents").frames(
            clip, sample_rate=rate, frame_ms=frame_ms or self.frame_ms)
        return it

    def say(self, session: AgentSession[Any], phrase: str, language: str | None = None, *,
            fallback_text: str | None = None, **kwargs: Any) -> SpeechHandle | None:
        """Speak ``phrase`` in ``session`` (LiveKit): :func:`greetkit.agents.say`.

        Plays the clip :meth:`select` chooses at the session's output rate, or speaks its
        text live; never raises, never silent while any text is known. Keyword arguments
        ``session.say`` accepts (``allow_interruptions``, ``add_to_chat_ctx``) go to it;
        every other one is a variable for :meth:`select`.

        >>> handle = bank.say(session, "default", language="zh-CN")  # doctest: +SKIP
        """
        handle: SpeechHandle | None = _integration("greetkit.agents").say(
            self, session, phrase, language, fallback_text=fallback_text, **kwargs)
        return handle

    def live_tts(self, language: str | None = None, **edge_options: str) -> Any:
        """A LiveKit ``tts.TTS`` speaking with the engine and voice ``language``'s clips were
        rendered with, leveled to the bank's loudness target (see :mod:`greetkit.live`).

        >>> session = AgentSession(tts=bank.live_tts("en"))  # doctest: +SKIP
        """
        from greetkit.live import live_tts

        return live_tts(self, language, **edge_options)

    # -- lifecycle --------------------------------------------------------------------------
    def reload(self) -> Bank:
        """Load the newest manifest of this store into a new bank; this one is untouched.

        Files both versions name are shared (mapped once), the rest mapped anew.
        """
        return load(self.root, frame_ms=self.frame_ms, verify=self._verify, _previous=self)

    def verify(self) -> dict[str, str]:
        """Check every file's checksum now; returns key -> problem for the clips with a bad
        file. A bad file is disabled alone; a clip with no good file becomes unavailable."""
        bad = {}
        for key, clip in list(self._clips.items()):
            problems = [f.verify() for f in clip._files.values()]
            if any(problems):
                bad[key] = next(p for p in problems if p)
            if all(problems):
                self._clips.pop(key, None)
                self.unavailable[key] = bad[key]
        return bad

    def _files(self) -> Iterator[tuple[str, _MappedFile]]:
        for clip in self._clips.values():
            for rate, f in clip._files.items():
                yield clip.entry.files[rate].file, f


def _integration(name: str) -> ModuleType:
    """A framework integration module, imported by name on first use and cached.

    The loader never imports an integration statically (they import the loader);
    :func:`load` warms the LiveKit one when its extra is installed, so no ``say`` pays.
    """
    module = sys.modules.get(name)
    if module is None:
        module = importlib.import_module(name)
    return module


def _warm_integrations() -> None:
    """Import the LiveKit integration (and livekit) now if installed: the first ``say`` of
    a job must not import anything on the event loop."""
    if "greetkit.agents" in sys.modules:
        return
    try:
        if importlib.util.find_spec("livekit.agents") is None:
            return
    except (ImportError, ValueError):
        return
    try:
        importlib.import_module("greetkit.agents")
    except Exception as exc:  # a broken install must not break load()
        log.warning("importing the LiveKit integration failed: %r", exc)


# -- loading ----------------------------------------------------------------------------------

class _ClipProblem(Exception):
    """A clip file failed a load-time check (internal: becomes an unavailable clip)."""


#: The most header bytes read before a clip's PCM (libsndfile writes 44; chunks such as
#: LIST may add some). A manifest claiming more is refused rather than read.
_MAX_HEADER = 65536


class _Mapper:
    """Opens and maps clip files safely, caching directory checks and reusing old maps."""

    def __init__(self, root: Path, previous: Bank | None) -> None:
        self.paths = StorePaths(root)
        self._reuse: dict[tuple[str, str], _MappedFile] = {}
        if previous is not None:
            self._reuse = {(rel, f.sha256): f for rel, f in previous._files()}

    def map(self, f: ClipFile) -> _MappedFile:
        rel, sha256, size, data_offset = f.file, f.sha256, f.bytes, f.data_offset
        reused = self._reuse.get((rel, sha256))
        if reused is not None:
            return reused
        try:
            # The file itself is opened with O_NOFOLLOW: a symlinked file is refused below.
            path = self.paths.locate(rel)
        except StoreError as exc:
            raise _ClipProblem(str(exc)) from None
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise _ClipProblem(f"{rel}: file is missing; run 'greetkit build'") from None
        except OSError as exc:
            what = "is a symlink (refused)" if os.path.islink(path) else (
                f"cannot be opened ({exc.strerror})")
            raise _ClipProblem(f"{rel}: {what}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _ClipProblem(f"{rel}: not a regular file")
            if st.st_size != size:
                raise _ClipProblem(f"{rel}: {st.st_size} bytes, manifest says {size} "
                                   "(truncated or replaced?); run 'greetkit build --force'")
            if not 12 <= data_offset <= min(size, _MAX_HEADER):
                raise _ClipProblem(f"{rel}: bad WAV header: data_offset {data_offset} is "
                                   "out of range")
            # The header is read with pread, not through the mapping: touching the mapping
            # would fault in (and count in RSS) a run of pages per file at every load.
            try:
                check_layout(os.pread(fd, data_offset, 0), size, sample_rate=f.sample_rate,
                             data_offset=data_offset, samples=f.samples)
            except AudioError as exc:
                raise _ClipProblem(f"{rel}: bad WAV header: {exc}") from None
            try:
                mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise _ClipProblem(f"{rel}: cannot be mapped ({exc})") from None
        except OSError as exc:
            raise _ClipProblem(f"{rel}: cannot be read ({exc.strerror})") from None
        finally:
            os.close(fd)
        return _MappedFile(path, mapped, data_offset, f.samples, sha256)


def _map_clip(mapper: _Mapper, entry: ClipEntry) -> tuple[Clip, list[str]]:
    """Map a clip and its variants. A bad variant is dropped (its problem returned); a bad
    48 kHz file makes the whole clip unavailable (raises _ClipProblem)."""
    if entry.channels != 1:
        raise _ClipProblem(f"stored with {entry.channels} channels; "
                           "this greetkit plays 48 kHz mono clips")
    files = {BASE_RATE: mapper.map(entry.base)}
    dropped = []
    for rate, f in entry.files.items():
        if rate == BASE_RATE:
            continue
        try:
            files[rate] = mapper.map(f)
        except _ClipProblem as exc:
            dropped.append(f"{rate} Hz variant unavailable: {exc}")
    clip = Clip(key=entry.key, phrase=entry.phrase, language=entry.language, text=entry.text,
                draft=entry.draft, entry=entry, _files=files)
    return clip, dropped


def _recover(root: Path) -> tuple[dict[str, dict[str, str]], str | None]:
    """Texts (phrase -> language -> text) and the default language from a manifest this
    greetkit cannot load (newer format, malformed), read leniently for live TTS."""
    try:
        data = read_json(root / MANIFEST_NAME)  # size- and depth-bounded, never raises else
    except (OSError, StoreError):
        return {}, None
    if not isinstance(data, dict):
        return {}, None
    texts: dict[str, dict[str, str]] = {}
    raw_texts = data.get("texts")
    if isinstance(raw_texts, dict):
        for phrase, by_lang in raw_texts.items():
            if _is_text(phrase) and isinstance(by_lang, dict):
                texts[phrase] = {k: v for k, v in by_lang.items()
                                 if _is_text(k) and _is_text(v)}
    clips = data.get("clips")
    for c in clips if isinstance(clips, list) else ():
        if isinstance(c, dict) and all(_is_text(c.get(k)) for k in ("phrase", "language", "text")):
            texts.setdefault(c["phrase"], {}).setdefault(c["language"], c["text"])
    default = data.get("default_language")
    return texts, default if _is_text(default) else None


def _is_text(value: Any) -> bool:
    """A string that can be logged and spoken (a lone surrogate from JSON cannot)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _spec_texts(root: Path, spec: str | os.PathLike[str] | None,
                ) -> tuple[dict[str, dict[str, str]], str | None, str]:
    """Texts and default language from ``spec`` or a voices.yaml beside the store (for
    live speech when the store cannot be loaded); empty when there is none."""
    candidates = [Path(spec)] if spec is not None else [
        root.parent / "voices.yaml", root / "voices.yaml"]
    for path in candidates:
        if spec is None and not path.is_file():
            continue
        try:
            from greetkit.spec import load_spec

            parsed = load_spec(path)
        except Exception as exc:  # a broken spec must not break load()
            log.error("cannot read texts from %s: %s", path.resolve(), exc)
            continue
        texts: dict[str, dict[str, str]] = {}
        for c in parsed.clips:
            texts.setdefault(c.phrase, {})[c.language] = c.text
        return texts, parsed.default_language, str(path.resolve())
    return {}, None, ""


def load(
    path: str | os.PathLike[str] = "greetings",
    *,
    frame_ms: int = 20,
    verify: bool | None = None,
    strict: bool = False,
    spec: str | os.PathLike[str] | None = None,
    version: int | None = None,
    _previous: Bank | None = None,
) -> Bank:
    """Load the bank in ``path`` (a store directory with ``manifest.json``). Synchronous.

    ``frame_ms`` is the default frame length of :meth:`Bank.frames`/:meth:`Bank.say`;
    ``verify`` the checksum policy (None: on first play, True: now, False: never; see the
    module docs). Never raises in the agent path: problems give an empty or partial bank
    and one warning each; a missing or unreadable store is an ERROR naming its absolute path.
    The texts of an unloadable store come from what the manifest still holds, else from
    ``spec`` (a voices.yaml), else from a voices.yaml beside the store, so ``say`` speaks
    them live. When the LiveKit extra is installed, its integration is imported here, so
    no ``say`` imports anything on the event loop.

    ``strict=True`` raises :class:`~greetkit.errors.StoreError` (or
    :class:`~greetkit.errors.VerifyError` listing the bad clips) instead.
    ``version`` pins a published version (``manifests/<version>.json``) instead of the
    current one, so a rollback or a newer publish does not move this worker.

    >>> bank = load("greetings")  # doctest: +SKIP
    >>> bank.resolve("default", language="en_US").text  # doctest: +SKIP
    "Hi! I'm Xiaozhi!"
    """
    started = time.perf_counter()
    if not 1 <= frame_ms <= 1000:
        raise ValueError(f"frame_ms must be between 1 and 1000, got {frame_ms}")
    root = Path(path)
    try:
        manifest = read_manifest(root, version=version)
        problem = None if manifest is not None else (
            f"{root}: no {MANIFEST_NAME}; run 'greetkit build'" if version is None else
            f"{root}: no version {version}; pull it ('greetkit pull URL --version "
            f"{version}') or unset the pin")
    except StoreError as exc:
        manifest, problem = None, str(exc)
    _warm_integrations()
    if manifest is None:
        if strict:
            raise StoreError(problem)
        return _live_only_bank(root, str(problem), spec, frame_ms=frame_ms, verify=verify,
                               started=started)
    clips, unavailable, refused_texts = _map_clips(_Mapper(root, _previous), manifest, verify)
    if strict and unavailable:
        raise VerifyError([f"{k}: {v}" for k, v in unavailable.items()])
    load_ms = (time.perf_counter() - started) * 1000
    bank = Bank(root, manifest, clips, unavailable=unavailable, texts=refused_texts,
                frame_ms=frame_ms, verify=verify, load_ms=load_ms)
    log.info("loaded %s version %d: %d clips (%d unavailable), %.1f MB mapped, "
             "%.2f ms", root, manifest.version, len(clips), len(unavailable),
             bank.nbytes / 1e6, load_ms)
    return bank


def _live_only_bank(root: Path, problem: str, spec: str | os.PathLike[str] | None, *,
                    frame_ms: int, verify: bool | None, started: float) -> Bank:
    """The bank of a store that cannot be loaded: no clips, every text it can still find
    (the manifest's, else voices.yaml's) spoken live; one ERROR naming the absolute path."""
    texts, default = _recover(root)
    where = "the manifest"
    if not texts:
        texts, default, where = _spec_texts(root, spec)
    log.error("cannot load the bank at %s: %s; every say() speaks live (%s). "
              "Fix: build the bank there ('greetkit build') or set the path%s",
              root.resolve(), problem,
              f"{sum(len(t) for t in texts.values())} texts from {where}" if texts
              else "no texts known: only the caller's fallback_text",
              "" if root.is_absolute() else " (relative paths follow the working "
              "directory; use an absolute one)")
    return Bank(root, None, {}, texts=texts, default_language=default, problem=problem,
                frame_ms=frame_ms, verify=verify,
                load_ms=(time.perf_counter() - started) * 1000)


def _map_clips(mapper: _Mapper, manifest: Manifest, verify: bool | None,
               ) -> tuple[dict[str, Clip], dict[str, str], dict[str, dict[str, str]]]:
    """Map every clip of ``manifest``: (clips, unavailable key -> why, texts of refused
    entries). A clip that cannot be mapped, or whose every file fails ``verify``, is
    unavailable alone; its words are still spoken live."""
    clips: dict[str, Clip] = {}
    unavailable: dict[str, str] = {}
    # Entries the manifest's schema refused: unavailable, their words still spoken live.
    refused_texts: dict[str, dict[str, str]] = {}
    for refused in manifest.refused:
        unavailable[refused.key] = refused.problem
        log.warning("%s (live TTS will say its text)", refused.problem)
        if refused.phrase and refused.language and refused.text is not None:
            refused_texts.setdefault(refused.phrase, {})[refused.language] = refused.text
    for entry in manifest.clips:
        try:
            clip, dropped = _map_clip(mapper, entry)
        except _ClipProblem as exc:
            unavailable[entry.key] = str(exc)
            log.warning("clip %r unavailable, live TTS will say its text: %s",
                        entry.key, exc)
            continue
        for d in dropped:
            log.warning("clip %r: %s", entry.key, d)
        if verify:
            # Hash every file now; a bad file is disabled alone (selection skips it).
            problems = [f.verify() for f in clip._files.values()]
            for rate, bad in zip(clip._files, problems, strict=True):
                if bad:
                    log.warning("clip %r at %d Hz disabled: %s", entry.key, rate, bad)
            if all(problems):
                bad = problems[0]
                unavailable[entry.key] = bad
                log.warning("clip %r unavailable, live TTS will say its text: %s",
                            entry.key, bad)
                continue
        clips[entry.key] = clip
    return clips, unavailable, refused_texts

