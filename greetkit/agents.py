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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from greetkit import metrics
from greetkit.errors import EngineError, GreetkitError, MissingExtra
from greetkit.loader import BASE_RATE, Bank, Clip

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

if _LIVEKIT_ERROR is None:
    from greetkit.edge_live import EdgeTTS as EdgeTTS

__all__ = ["EdgeTTS", "EspeakTTS", "frames", "say"]

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
    """Async iterator of ``rtc.AudioFrame`` over :meth:`Clip.chunks
    <greetkit.loader.Clip.chunks>` windows.

    A plain class rather than an async generator: no per-call generator finalizer hook,
    which costs more than cutting a frame. One bytes copy per frame is the only copy:
    AudioFrame hands its buffer's address to the FFI, which needs bytes. The last frame is
    shorter, never padded, so playback is sample-exact.
    """

    __slots__ = ("_chunks", "_first_at", "_on_first", "_rate", "_started")

    def __init__(self, chunks: Iterator[memoryview], sample_rate: int,
                 on_first: Callable[[float], None] | None = None) -> None:
        self._chunks = chunks
        self._rate = sample_rate
        self._started = False
        #: Called once with the perf_counter() time the first frame went out (for the log).
        self._on_first = on_first
        self._first_at = 0.0

    def __aiter__(self) -> _ClipFrames:
        return self

    async def __anext__(self) -> rtc.AudioFrame:
        if self._started and self._on_first is not None:
            self._report()  # reported now, so logging never delays frame 1
        chunk = next(self._chunks, None)
        if chunk is None:
            raise StopAsyncIteration
        data = chunk.tobytes()
        frame = rtc.AudioFrame(data, self._rate, 1, len(data) >> 1)
        if not self._started:
            self._started = True
            self._first_at = time.perf_counter()
        return frame

    def _report(self) -> None:
        on_first, self._on_first = self._on_first, None
        if on_first is not None:
            on_first(self._first_at)

    async def aclose(self) -> None:
        """Stop early (LiveKit closes the audio iterator when a speech is interrupted)."""
        if self._started:
            self._report()
        self._on_first = None
        self._chunks = iter(())


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
    return _ClipFrames(clip.chunks(rate, _frame_samples(rate, frame_ms)), rate)


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


#: Keyword arguments of ``AgentSession.say`` that Bank.say passes on; every other keyword
#: is a variable for :meth:`Bank.select` and never reaches the session.
SAY_OPTIONS = frozenset({"allow_interruptions", "add_to_chat_ctx"})
_FRAMEWORK = "livekit"


def say(bank: Bank, session: AgentSession[Any], phrase: str, language: str | None = None, *,
        fallback_text: str | None = None, **kwargs: Any) -> SpeechHandle | None:
    """:meth:`greetkit.loader.Bank.say`: play the clip :meth:`Bank.select` chooses, else
    speak its text live.

    Never raises. Keywords in :data:`SAY_OPTIONS` go to ``session.say``; the rest select
    variants. One log line per say (source, time to first frame); live speech is a
    warning with the reason; nothing to say at all is one ERROR.
    """
    said_at = time.perf_counter()
    options = {k: v for k, v in kwargs.items() if k in SAY_OPTIONS}
    variables = {k: v for k, v in kwargs.items() if k not in SAY_OPTIONS}
    version = bank.version
    sel = bank.select(phrase, language, sample_rate=output_rate(session),
                      fallback_text=fallback_text, **variables)
    reason = sel.reason
    where = f"{phrase!r} ({language if isinstance(language, str) else 'default language'})"
    if sel.clip is not None and sel.sample_rate is not None:
        key, rate = sel.clip.key, sel.sample_rate
        try:
            _require_livekit("greetkit Bank.say with a clip")

            def first_frame(at: float) -> None:
                seconds = at - said_at
                log.info("say %r source=clip rate=%d first frame %.3f ms after say()",
                         key, rate, seconds * 1000)
                metrics.record_first_frame(seconds, framework=_FRAMEWORK, source="clip",
                                           bank_version=version)

            audio = _ClipFrames(sel.clip.chunks(rate, _frame_samples(rate, bank.frame_ms)),
                                rate, first_frame)
            handle = session.say(sel.clip.text, audio=audio, **options)
            _prewarm(session)
            if sel.via == "fallback":
                log.warning("say %s source=clip: the bank has nothing for this "
                            "phrase; playing the fallback clip", where)
            _watch_playout(handle, said_at, "clip", version)
            return handle
        except Exception as exc:
            reason = f"playing clip {key!r} failed: {exc!r}"

    text = sel.text
    if not text:
        log.error("say %s source=none: %s, and no text to speak live (no manifest "
                  "text, no voices.yaml, no fallback_text): nothing is said",
                  where, reason or "no clip")
        metrics.record_live_fallback("no_text", framework=_FRAMEWORK, bank_version=version)
        return None
    try:
        handle = session.say(text, **options)
    except Exception as exc:
        log.error("say %s source=none: %s; live TTS failed too: %r",
                  where, reason or "no clip", exc)
        metrics.record_live_fallback("live_failed", framework=_FRAMEWORK, bank_version=version)
        return None
    log.warning("say %s source=live: %s; speaking %r with the session's TTS",
                where, reason or "no clip in the bank", text)
    metrics.record_live_fallback(metrics.fallback_reason(sel.via, reason), framework=_FRAMEWORK,
                                 bank_version=version)
    _watch_playout(handle, said_at, "live", version)
    return handle


def _prewarm(session: AgentSession[Any]) -> None:
    """Open the live TTS's connection while the clip plays, so the first live sentence after
    the greeting starts without connection set-up (``tts.prewarm()``; never raises)."""
    try:
        if session.tts is not None:
            session.tts.prewarm()
    except Exception as exc:
        log.debug("prewarming the live TTS failed: %r", exc)


def _watch_playout(handle: Any, said_at: float, source: str, version: int | None) -> None:
    """Record say → playout once LiveKit reports the speech started playing (where it does:
    the assistant ``ChatMessage.metrics`` of the handle); for live speech that is also its
    say → first frame."""
    try:
        add = handle.add_done_callback
    except AttributeError:
        return
    wall_said = time.time() - (time.perf_counter() - said_at)

    def done(h: Any) -> None:
        try:
            started = None
            for item in getattr(h, "chat_items", None) or ():
                m = getattr(item, "metrics", None) or {}
                started = m.get("started_speaking_at") if isinstance(m, dict) else None
                if started:
                    break
            if started:
                seconds = max(0.0, float(started) - wall_said)
                metrics.record_playout(seconds, framework=_FRAMEWORK, source=source,
                                       bank_version=version)
                if source == "live":
                    # Live frames come from the session's TTS, out of greetkit's sight: the
                    # first one is where LiveKit reports it, the output starting to play.
                    log.info("say source=live first frame %.3f ms after say() "
                             "(LiveKit's started_speaking_at)", seconds * 1000)
                    metrics.record_first_frame(seconds, framework=_FRAMEWORK, source="live",
                                               bank_version=version)
        except Exception as exc:  # metrics never break a greeting
            log.debug("playout metric skipped: %r", exc)

    try:
        add(done)
    except Exception as exc:
        log.debug("playout metric skipped: %r", exc)


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
