"""LiveKit Agents integration: clips as ``rtc.AudioFrame`` streams, ``say`` with live-TTS
fallback, and :class:`EspeakTTS`, an offline ``tts.TTS`` over greetkit's espeak-ng engine.

This is the only module that imports ``livekit`` (the ``greetkit[livekit]`` extra). Without
it :func:`greetkit.load` and the PCM still work; :func:`frames` raises
:class:`~greetkit.errors.MissingExtra` and ``EspeakTTS`` is not importable.

Sample rates: ``session.say(audio=...)`` resamples from the first frame's rate to the
session's audio output rate. LiveKit's room output defaults to **24 kHz**, so for a
resample-free path either build a 24 kHz variant (``sample_rates: [48000, 24000]`` in
voices.yaml; :meth:`greetkit.loader.Bank.say` picks it by reading
``session.output.audio.sample_rate``) or run the room output at 48 kHz with
``room_io.RoomOptions(audio_output=room_io.AudioOutputOptions(sample_rate=48000))``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from greetkit.errors import EngineError, GreetkitError, MissingExtra
from greetkit.loader import BASE_RATE, Bank, Clip, _MappedFile

_LIVEKIT_ERROR: ImportError | None
try:
    from livekit import rtc
    from livekit.agents import (
        DEFAULT_API_CONNECT_OPTIONS,
        APIConnectOptions,
        APIError,
        tts,
        utils,
    )

    _LIVEKIT_ERROR = None
except ImportError as _exc:  # the optional extra is not installed
    _LIVEKIT_ERROR = _exc

if TYPE_CHECKING:  # pragma: no cover
    from livekit.agents import AgentSession
    from livekit.agents.voice import SpeechHandle

__all__ = ["EspeakTTS", "frames", "say"]

log = logging.getLogger("greetkit")



def _require_livekit(feature: str) -> None:
    if _LIVEKIT_ERROR is not None:
        raise MissingExtra(feature, "livekit") from _LIVEKIT_ERROR


_STEPS: dict[tuple[int, int], int] = {}


def _frame_samples(sample_rate: int, frame_ms: int) -> int:
    step = _STEPS.get((sample_rate, frame_ms))
    if step is None:
        if frame_ms <= 0 or (sample_rate * frame_ms) % 1000:
            raise ValueError(f"frame_ms={frame_ms} is not a whole number of samples at "
                             f"{sample_rate} Hz")
        step = _STEPS[(sample_rate, frame_ms)] = sample_rate * frame_ms // 1000
    return step


class _ClipFrames:
    """Async iterator cutting ``step``-sample AudioFrames from a mapped clip file.

    A plain class rather than an async generator: no per-call generator finalizer hook,
    which costs more than cutting a frame. One bytes copy per frame is the only copy:
    AudioFrame hands its buffer's address to the FFI, which needs bytes (a slice of a
    read-only mapping is copied there anyway). The last frame is shorter, never padded,
    so playback is sample-exact.

    The first frame of a play is the file's *spare*: cut by the previous play after its
    own first frame went out, taken by exactly one play (no AudioFrame is ever shared), so
    the latency-critical first frame costs no copy and the cut moves to the 20 ms of slack
    before the second.
    """

    __slots__ = ("_end", "_file", "_first_at", "_on_first", "_pos", "_rate", "_refill",
                 "_step_bytes", "_view")

    def __init__(self, mapped: _MappedFile, sample_rate: int, step: int,
                 on_first: Callable[[float], None] | None = None) -> None:
        self._file = mapped
        self._view = mapped.view
        self._rate = sample_rate
        self._step_bytes = 2 * step
        self._pos = 0
        self._end = len(self._view)
        self._refill = False
        #: Called once with the perf_counter() time the first frame went out (for the log).
        self._on_first = on_first
        self._first_at = 0.0

    def __aiter__(self) -> _ClipFrames:
        return self

    def _cut(self, pos: int) -> rtc.AudioFrame:
        data = self._view[pos : pos + self._step_bytes].tobytes()
        return rtc.AudioFrame(data, self._rate, 1, len(data) >> 1)

    async def __anext__(self) -> rtc.AudioFrame:
        pos = self._pos
        if pos:
            if self._refill:
                self._refill = False
                if self._file.spare is None:
                    self._file.spare = (self._step_bytes, self._cut(0))
            if self._on_first is not None:  # logged now, so logging never delays frame 1
                self._report()
        if pos >= self._end:
            raise StopAsyncIteration
        self._pos = pos + self._step_bytes
        if pos:
            return self._cut(pos)
        spare, self._file.spare = self._file.spare, None
        frame = spare[1] if spare is not None and spare[0] == self._step_bytes else (
            self._cut(0))
        self._refill = True
        if self._on_first is not None:
            self._first_at = time.perf_counter()
        return frame

    def _report(self) -> None:
        on_first, self._on_first = self._on_first, None
        if on_first is not None:
            on_first(self._first_at)

    async def aclose(self) -> None:
        """Stop early (LiveKit closes the audio iterator when a speech is interrupted)."""
        if self._pos:
            self._report()
        self._on_first = None
        self._pos = self._end


def frames(clip: Clip, *, frame_ms: int = 20,
           sample_rate: int | None = None) -> AsyncIterator[rtc.AudioFrame]:
    """A fresh async iterator of mono int16 ``rtc.AudioFrame`` over ``clip``'s PCM.

    ``sample_rate`` None plays the 48 kHz clip; another rate plays the stored variant at
    that rate (:class:`~greetkit.errors.AudioError` if there is none). Frames are
    ``frame_ms`` long except the last, which holds the remainder: the concatenated frames
    equal the stored PCM sample for sample. Each call is independent, so any number of
    sessions may play the same clip at once. This is the raw cut: :meth:`Bank.frames
    <greetkit.loader.Bank.frames>` also applies the bank's checksum policy first.

    >>> async for frame in frames(bank["en_default"]):  # doctest: +SKIP
    ...     await audio_source.capture_frame(frame)
    """
    if _LIVEKIT_ERROR is not None:
        _require_livekit("greetkit.agents.frames (LiveKit AudioFrames)")
    rate = sample_rate or BASE_RATE
    clip.buffer(rate)  # raises the AudioError naming the rates the clip has
    return _ClipFrames(clip._files[rate], rate, _frame_samples(rate, frame_ms))


def frames_of(mapped: _MappedFile, sample_rate: int,
              frame_ms: int) -> AsyncIterator[rtc.AudioFrame]:
    """Frames of one mapped clip file (what :meth:`greetkit.loader.Bank.frames` calls after
    its checks)."""
    if _LIVEKIT_ERROR is not None:
        _require_livekit("greetkit.agents.frames (LiveKit AudioFrames)")
    return _ClipFrames(mapped, sample_rate, _frame_samples(sample_rate, frame_ms))


def output_rate(session: Any) -> int | None:
    """The sample rate ``session``'s audio output requires, or None if it takes any rate.

    Reads ``session.output.audio.sample_rate`` (a wrapper chain reports its sink's rate).
    """
    try:
        audio = session.output.audio
        rate = audio.sample_rate if audio is not None else None
    except Exception:  # a session shape we do not know: play 48 kHz and let it resample
        return None
    return rate if isinstance(rate, int) and rate > 0 else None


def say(bank: Bank, session: AgentSession[Any], phrase: str, language: str | None = None, *,
        fallback_text: str | None = None, **kwargs: Any) -> SpeechHandle | None:
    """:meth:`greetkit.loader.Bank.say`: play the best clip, else speak its text live.

    Never raises: every failure ends in live TTS (or nothing) plus exactly one warning.
    """
    said_at = time.perf_counter()
    try:
        selection = bank.select(phrase, language)
        clip, problem = selection.clip, selection.problem
        if clip is not None:
            rate = output_rate(session)
            play_rate = rate if rate in clip.rates else BASE_RATE
            bad = bank.playable(clip, play_rate)
            if bad:
                bank._drop(clip.key, bad)  # do not hash a known-bad file again
                clip, problem = None, bad
    except Exception as exc:  # a bug must not silence the greeting
        selection, clip, problem = None, None, f"selection failed: {exc!r}"
        play_rate = BASE_RATE

    if clip is not None:
        try:
            key = clip.key

            def first_frame(at: float) -> None:
                log.info("greetkit: say %r source=clip rate=%d first frame %.3f ms after say()",
                         key, play_rate, (at - said_at) * 1000)

            _require_livekit("greetkit Bank.say with a clip")
            audio = _ClipFrames(clip._files[play_rate], play_rate,
                                _frame_samples(play_rate, bank.frame_ms), first_frame)
            handle = session.say(clip.text, audio=audio, **kwargs)
            if selection is not None and selection.via == "fallback":
                log.warning("greetkit: say %r (%s) source=clip: the bank has nothing for this "
                            "phrase; playing the fallback clip", phrase,
                            language or "default language")
            return handle
        except Exception as exc:
            problem = f"playing clip {clip.key!r} failed: {exc!r}"

    text = selection.text if selection is not None and selection.text else fallback_text
    where = f"{phrase!r} ({language or 'default language'})"
    if not text:
        log.warning("greetkit: say %s source=none: %s and no text to speak live",
                    where, problem or "no clip or text in the bank")
        return None
    try:
        handle = session.say(text, **kwargs)
    except Exception as exc:
        log.warning("greetkit: say %s source=none: %s; live TTS failed too: %r",
                    where, problem or "no clip", exc)
        return None
    log.warning("greetkit: say %s source=live: %s; speaking %r with the session's TTS",
                where, problem or "no clip in the bank", text)
    return handle


# -- EspeakTTS ------------------------------------------------------------------------------

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CHINESE_VOICES = frozenset({"cmn", "yue", "cmn-latn-pinyin", "hak"})


@dataclass(frozen=True)
class _EspeakOptions:
    language: str
    voice: str
    rate: str
    pitch: str
    volume: str


def _to_int16(samples: npt.NDArray[np.float32], rate: int, out_rate: int) -> npt.NDArray[np.int16]:
    mono = samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)
    if rate != out_rate:
        import soxr

        mono = np.asarray(soxr.resample(mono, rate, out_rate, quality="HQ"), dtype=np.float32)
    return np.asarray(np.clip(np.round(mono * 32767.0), -32768, 32767), dtype=np.int16)


if TYPE_CHECKING or _LIVEKIT_ERROR is None:

    class EspeakTTS(tts.TTS[Any]):
        """LiveKit TTS over greetkit's embedded espeak-ng: offline, no keys, no network.

        For the live fallback of :meth:`~greetkit.loader.Bank.say` when no cloud TTS is
        configured, and for testing. Not streaming (``capabilities.streaming=False``): the
        session wraps it in a sentence ``StreamAdapter``. Text containing Chinese characters
        is spoken with the ``cmn`` voice unless a Chinese voice is set.

        >>> tts = EspeakTTS(language="en", sample_rate=48000)  # doctest: +SKIP
        >>> session = AgentSession(tts=tts)  # doctest: +SKIP
        """

        def __init__(self, *, language: str = "en", voice: str | None = None,
                     sample_rate: int = 24000, rate: str = "+0%", pitch: str = "+0Hz",
                     volume: str = "+0%") -> None:
            super().__init__(capabilities=tts.TTSCapabilities(streaming=False),
                             sample_rate=sample_rate, num_channels=1)
            self._opts = _EspeakOptions(language, voice or _voice(language), rate, pitch,
                                        volume)

        @property
        def model(self) -> str:
            return "espeak-ng"

        @property
        def provider(self) -> str:
            return "greetkit"

        def update_options(self, *, language: str | None = None,
                           voice: str | None = None) -> None:
            """Change the language (and its default voice) or the voice for later syntheses."""
            if language is not None:
                self._opts = replace(self._opts, language=language,
                                     voice=voice or _voice(language))
            elif voice is not None:
                self._opts = replace(self._opts, voice=voice)

        def synthesize(self, text: str, *,
                       conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                       ) -> tts.ChunkedStream:
            return _EspeakStream(tts=self, input_text=text, conn_options=conn_options,
                                 opts=self._opts)

    class _EspeakStream(tts.ChunkedStream):
        def __init__(self, *, tts: EspeakTTS, input_text: str,
                     conn_options: APIConnectOptions, opts: _EspeakOptions) -> None:
            super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
            self._opts = opts  # copied per call: update_options() never changes a running one
            self._out_rate = tts.sample_rate

        async def _run(self, output_emitter: tts.AudioEmitter) -> None:
            from greetkit.engines import get_engine
            from greetkit.engines.base import RenderRequest

            voice = self._opts.voice
            if _HAN.search(self.input_text) and voice not in _CHINESE_VOICES:
                voice = "cmn"
            request = RenderRequest(
                key="live", text=self.input_text, language=self._opts.language, voice=voice,
                options={"rate": self._opts.rate, "pitch": self._opts.pitch,
                         "volume": self._opts.volume},
            )
            try:
                audio = await get_engine("espeak").render(request)
            except EngineError as exc:
                raise APIError(f"espeak: {exc}", retryable=exc.retryable) from exc
            except GreetkitError as exc:
                raise APIError(f"espeak: {exc}", retryable=False) from exc
            pcm = _to_int16(audio.samples, audio.sample_rate, self._out_rate)
            output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=self._out_rate,
                                      num_channels=1, mime_type="audio/pcm")
            output_emitter.push(pcm.tobytes())
            output_emitter.flush()


def _voice(language: str) -> str:
    from greetkit.engines.espeak import voice_for_language

    return voice_for_language(language) or "en-us"


def __getattr__(name: str) -> Any:
    if name == "EspeakTTS":  # only reached when livekit is missing
        _require_livekit("greetkit.agents.EspeakTTS")
    raise AttributeError(f"module 'greetkit.agents' has no attribute {name!r}")
