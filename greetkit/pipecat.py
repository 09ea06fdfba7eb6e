"""Pipecat integration: :class:`BankTTS`, a ``TTSService`` that speaks bank clips exactly.

Put it where the bot's TTS sits and hand it the bot's real TTS as ``live``::

    from greetkit.pipecat import BankTTS

    tts = BankTTS(greetkit.load("greetings"), live=CartesiaHttpTTSService(...))

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        await worker.queue_frame(tts.greeting("default", language="en"))

Text that is a bank clip's text is played from the mapped file (the variant at the
pipeline's output rate when the bank has one, so the transport does not resample); any other
text, and a clip whose file fails its checks, is spoken by ``live``. ``run_tts`` yields only
``TTSAudioRawFrame``s and the base class (``push_start_frame``/``push_stop_frames``) frames
them, so the spoken text lands in the ``LLMContext`` as the assistant's message.

``live`` must be a Pipecat ``TTSService`` whose ``run_tts`` yields its audio (the HTTP-style
services); it is set up, started and stopped together with this service.
Needs the ``pipecat`` extra (pipecat-ai 1.14).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    StartFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from greetkit import metrics
from greetkit.loader import BASE_RATE, Bank, Clip

__all__ = ["BankTTS"]

log = logging.getLogger("greetkit")

#: Samples per TTSAudioRawFrame: 20 ms (the output transport re-chunks anyway).
FRAME_MS = 20


class BankTTS(TTSService):
    """A Pipecat ``TTSService`` playing greetkit clips, with ``live`` speaking everything else.

    :param bank: a loaded bank (:func:`greetkit.load`).
    :param live: the bot's real TTS service, for text that is not a clip (None: such text
        is logged as an error once and skipped, so nothing waits forever).
    :param interruptible: default for :meth:`greeting` (False: greetings play to the end).
    Other keyword arguments go to ``TTSService``.
    """

    def __init__(self, bank: Bank, *, live: TTSService | None = None,
                 interruptible: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("settings", TTSSettings(model=None, voice=None, language=None))
        kwargs.setdefault("push_start_frame", True)
        kwargs.setdefault("push_stop_frames", True)
        super().__init__(**kwargs)
        self.bank = bank
        self.live = live
        self.interruptible = interruptible
        self._warned_no_live = False
        # text -> clip for every playable clip, so LLM text equal to a clip's words plays it.
        self._by_text: dict[str, Clip] = {}
        for clip in bank.values():
            self._by_text.setdefault(clip.text.strip(), clip)
        self._queued: dict[str, float] = {}
        # greeting text -> why its selection is live (a fallback-counter label)
        self._live_greetings: dict[str, str] = {}

    def greeting(self, phrase: str = "default", language: str | None = None, *,
                 interruptible: bool | None = None, **variables: str) -> TTSSpeakFrame:
        """A ``TTSSpeakFrame`` for the clip selected for ``phrase`` (its text), to queue
        from ``on_client_connected``. Never raises: with no playable clip the frame carries
        the text for ``live``; with nothing known, the bank's fallback text or ``"Hello!"``.

        >>> await worker.queue_frame(tts.greeting("default", language="zh-CN"))  # doctest: +SKIP
        """
        try:
            vars_: dict[str, Any] = dict(variables)  # select() also takes keyword sample_rate
            sel = self.bank.select(phrase, language, **vars_)
            clip, text = sel.clip, sel.text
            why = metrics.fallback_reason(sel.via, sel.reason)
        except Exception as exc:  # the agent never sees an exception
            log.error("pipecat greeting %r: selection failed: %r", phrase, exc)
            clip, text, why = None, None, "unavailable"
        if clip is not None:
            self._by_text.setdefault(clip.text.strip(), clip)
            text = clip.text
        text = text or "Hello!"
        if clip is None:
            self._live_greetings[text.strip()] = why
        self._queued[text.strip()] = time.perf_counter()
        frame = TTSSpeakFrame(text)
        frame.interruptible = self.interruptible if interruptible is None else interruptible
        return frame

    # -- lifecycle: the live service follows this one ------------------------------------------
    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        if self.live is not None:
            await self.live.setup(setup)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        if self.live is not None:
            await self.live.start(frame)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        if self.live is not None:
            await self.live.stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        if self.live is not None:
            await self.live.cancel(frame)

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]
        if self.live is not None:
            await self.live.cleanup()  # type: ignore[no-untyped-call]

    # -- synthesis ---------------------------------------------------------------------------
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Play the clip whose text is ``text``, else speak it through ``live``."""
        key = text.strip()
        queued = self._queued.pop(key, None)
        t0 = queued if queued is not None else time.perf_counter()
        clip = self._by_text.get(key)
        problem = f"{key!r} is not the text of a clip in the bank"
        # A greeting whose selection was live is a fallback; other text (an LLM reply) is not.
        fallback = self._live_greetings.pop(key, None)
        rate = self.sample_rate
        if clip is not None:
            play_rate = rate if rate in clip.rates else BASE_RATE
            try:
                problem = self.bank.playable(clip, play_rate)
            except Exception as exc:
                problem = repr(exc)
            if not problem:
                if play_rate != rate:
                    log.warning("clip %r has no %d Hz variant; playing %d Hz (the "
                                "transport resamples): add %d to defaults.sample_rates",
                                clip.key, rate, play_rate, rate)
                async for frame in self._clip_frames(clip, play_rate, context_id, t0):
                    yield frame
                return
            self._by_text.pop(key, None)
            fallback = metrics.fallback_reason("", problem)
        if fallback is not None:
            metrics.record_live_fallback(fallback, framework="pipecat",
                                         bank_version=self.bank.version)
        async for frame in self._live_frames(text, context_id, problem, t0):
            yield frame

    async def _clip_frames(self, clip: Clip, rate: int, context_id: str,
                           t0: float) -> AsyncGenerator[Frame | None, None]:
        first = True
        for chunk in clip.chunks(rate, rate * FRAME_MS // 1000):
            if first:
                first = False
                self._first_frame(clip.key, "clip", rate, t0)
            yield TTSAudioRawFrame(bytes(chunk), rate, 1, context_id=context_id)

    async def _live_frames(self, text: str, context_id: str, problem: str,
                           t0: float) -> AsyncGenerator[Frame | None, None]:
        if self.live is None:
            if not self._warned_no_live:
                self._warned_no_live = True
                log.error("pipecat: %s and BankTTS has no live service, so it is "
                          "skipped; pass BankTTS(bank, live=<your TTSService>)", problem)
            return
        log.warning("say %r source=live: %s; speaking it with %s",
                    text, problem, type(self.live).__name__)
        first = True
        try:
            async for frame in self.live.run_tts(text, context_id):
                if isinstance(frame, TTSAudioRawFrame):
                    if first:
                        first = False
                        self._first_frame(text, "live", frame.sample_rate, t0)
                    frame.context_id = context_id
                    yield frame
        except Exception as exc:  # never into the pipeline
            log.error("say %r source=none: live TTS %s failed: %r",
                      text, type(self.live).__name__, exc)

    def _first_frame(self, what: str, source: str, rate: int, t0: float) -> None:
        seconds = time.perf_counter() - t0
        log.info("say %r source=%s rate=%d first frame %.3f ms after queueing",
                 what, source, rate, seconds * 1000)
        metrics.record_first_frame(seconds, framework="pipecat", source=source,
                                   bank_version=self.bank.version)
