"""Test parts for the Pipecat integration: a live TTSService over greetkit's espeak engine and
a capturing output transport (the real BaseOutputTransport media path, recording writes)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
import soxr
from pipecat.frames.frames import Frame, OutputAudioRawFrame, StartFrame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams

from greetkit.engines.base import RenderRequest
from greetkit.engines.espeak import EspeakEngine


class EspeakTTS(TTSService):
    """A live TTS that really synthesizes: espeak-ng, resampled to the pipeline's rate."""

    def __init__(self, voice: str = "en-us", **kwargs: Any) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True,
                         settings=TTSSettings(model=None, voice=None, language=None), **kwargs)
        self.voice = voice
        self.spoken: list[str] = []

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        self.spoken.append(text)
        audio = await EspeakEngine().render(RenderRequest(
            key="live", text=text, language="en", voice=self.voice))
        pcm = soxr.resample(audio.samples, audio.sample_rate, self.sample_rate)
        data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
        step = 2 * self.sample_rate // 50
        for i in range(0, len(data), step):
            yield TTSAudioRawFrame(data[i:i + step], self.sample_rate, 1, context_id=context_id)


class CapturingOutput(BaseOutputTransport):
    """An output transport that records every audio frame the media sender writes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(TransportParams(audio_out_enabled=True), **kwargs)
        self.frames: list[OutputAudioRawFrame] = []
        self.first_write: float | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if self.first_write is None:
            import time

            self.first_write = time.perf_counter()
        self.frames.append(frame)
        return True

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(f.audio for f in self.frames), dtype="<i2")
