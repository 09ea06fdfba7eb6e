"""The bank's voice, live: a LiveKit ``tts.TTS`` built from the engine entry its clips used.

:func:`live_tts` (``bank.live_tts(language)``) rebuilds the TTS a language's clips were
rendered with (the manifest's ``engines`` record: ``module:callable``, options, voice; secrets
from the environment as the plugin reads them) and wraps it in :class:`LeveledTTS`, which applies
one constant gain: the bank's loudness target minus the engine's own integrated loudness
(BS.1770-4) measured over its renders at build time. A greeting clip and the live sentence after
it then sit at the same level. Pass the result as the ``AgentSession``'s TTS; ``bank.say``'s
live fallback speaks through the session's TTS, so clips and live speech share one
configuration.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from statistics import median
from typing import TYPE_CHECKING, Any

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts, utils

if TYPE_CHECKING:
    from greetkit.loader import Bank
    from greetkit.manifest import ClipEntry

log = logging.getLogger("greetkit")


class LeveledTTS(tts.TTS[Any]):
    """Any LiveKit ``tts.TTS`` at a constant gain (``gain_db``), otherwise unchanged.

    Samples are scaled in float and rounded back to int16, clipped at full scale (the gain is
    a loudness match, normally a few dB; clips are true-peak limited at build time, live speech
    is not). ``prewarm()`` and ``aclose()`` reach the wrapped TTS.
    """

    def __init__(self, inner: tts.TTS[Any], gain_db: float) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False),
                         sample_rate=inner.sample_rate, num_channels=inner.num_channels)
        self.inner = inner
        self.gain_db = gain_db

    @property
    def model(self) -> str:
        return str(self.inner.model)

    @property
    def provider(self) -> str:
        return str(self.inner.provider)

    def synthesize(self, text: str, *,
                   conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                   ) -> tts.ChunkedStream:
        return _LeveledStream(tts=self, input_text=text, conn_options=conn_options)

    def prewarm(self) -> None:
        self.inner.prewarm()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _LeveledStream(tts.ChunkedStream):
    def __init__(self, *, tts: LeveledTTS, input_text: str,
                 conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._leveled = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        gain = float(10.0 ** (self._leveled.gain_db / 20.0))
        output_emitter.initialize(request_id=utils.shortuuid(),
                                  sample_rate=self._leveled.sample_rate,
                                  num_channels=self._leveled.num_channels,
                                  mime_type="audio/pcm")
        # This stream's own retries cover the inner one's: it must not retry as well.
        inner_options = replace(self._conn_options, max_retry=0)
        async with self._leveled.inner.synthesize(self.input_text,
                                                  conn_options=inner_options) as stream:
            async for event in stream:
                pcm = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float32) * gain
                output_emitter.push(np.clip(np.round(pcm), -32768, 32767)
                                    .astype("<i2").tobytes())
        output_emitter.flush()


def _norm(language: str) -> str:
    return language.replace("_", "-").lower()


def _entries_for(bank: Bank, language: str | None) -> list[ClipEntry]:
    """The non-draft clips of ``language`` (exact, else its base, else the default language)."""
    clips = [c for c in (bank.manifest.clips if bank.manifest else ()) if not c.draft]
    wanted = [_norm(language)] if language else []
    if language:
        wanted.append(_norm(language).split("-")[0])
    if bank.default_language:
        wanted.append(_norm(bank.default_language))
    for lang in wanted:
        found = [c for c in clips if _norm(c.language) == lang]
        if found:
            return found
    return clips


def live_tts(bank: Bank, language: str | None = None, *, rate: str = "+0%",
             pitch: str = "+0Hz", volume: str = "+0%") -> LeveledTTS:
    """The TTS that speaks like ``language``'s clips, leveled to the bank's loudness target.

    Uses the engine and voice most of the language's (non-draft) clips were rendered with.
    A LiveKit engine is rebuilt from the manifest's record; an edge bank speaks through
    :class:`greetkit.agents.EdgeTTS` with the clips' voice (``rate``/``pitch``/``volume``: the
    edge options the clips used, if not the defaults); an espeak bank through
    :class:`greetkit.agents.EspeakTTS`; anything else (or an empty bank) falls back to espeak
    with a warning. Raises :class:`~greetkit.errors.EngineUnavailable` when the plugin's
    constructor refuses (no API key in the environment, say).
    """
    from greetkit.agents import EspeakTTS
    from greetkit.engines.livekit import LiveKitEngine

    entries = _entries_for(bank, language)
    lang = language or bank.default_language or "en"
    if not entries:
        log.warning("live_tts(%r): the bank has no rendered clips; speaking with "
                    "espeak at its own level", language)
        return LeveledTTS(EspeakTTS(language=lang, sample_rate=48000), 0.0)
    engine = Counter(c.engine for c in entries).most_common(1)[0][0]
    mine = [c for c in entries if c.engine == engine]
    voice = Counter(c.voice for c in mine).most_common(1)[0][0]
    target = median(c.target_lufs for c in mine)
    level = median(c.lufs - c.gain_db for c in mine)
    record = bank.manifest.engines.get(engine) if bank.manifest else None
    inner: tts.TTS[Any]
    if record is not None:
        level = record.lufs
        inner = LiveKitEngine(engine, record.livekit, dict(record.options)).make_tts(voice)
    elif engine == "edge":
        from greetkit.agents import EdgeTTS

        inner = EdgeTTS(voice, rate=rate, pitch=pitch, volume=volume)
    elif engine == "espeak":
        inner = EspeakTTS(language=mine[0].language, voice=voice, sample_rate=48000)
    else:
        log.warning("live_tts(%r): clips come from %r, which has no live LiveKit "
                    "TTS here; speaking with espeak", language, engine)
        espeak = [c for c in entries if c.engine == "espeak"]
        level = median(c.lufs - c.gain_db for c in espeak) if espeak else target
        inner = EspeakTTS(language=mine[0].language, sample_rate=48000)
    gain = round(target - level, 2)
    log.info("live_tts(%r): %s voice %r, %+.2f dB to %.1f LUFS", language, engine,
             voice, gain, target)
    return LeveledTTS(inner, gain)
