"""Edge voices live: :class:`EdgeTTS`, a streaming LiveKit ``tts.TTS`` over edge-tts.

The agent's text arrives token by token; it is cut into sentences (LiveKit's basic sentence
tokenizer) and each sentence is sent to the service as soon as it is complete, its MP3 pushed to
the session while it arrives. The first sentence is heard while later ones are still being
written and synthesized. Voice, rate, pitch and volume are the edge engine's options, so the
same values as the clips' give the same voice live. Re-exported as ``greetkit.agents.EdgeTTS``.

edge-tts talks to Microsoft's read-aloud endpoint, which is unofficial and unlicensed: use it
for prototypes; for production use a licensed provider's LiveKit plugin (README, Engines).
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    tokenize,
    tts,
    utils,
)

from greetkit.engines.edge import configure_client

#: The service's ``audio-24khz-48kbitrate-mono-mp3`` output.
SAMPLE_RATE = 24000


class EdgeTTS(tts.TTS[Any]):
    """A LiveKit TTS speaking with an edge neural voice, streaming sentence by sentence.

    >>> session = AgentSession(tts=EdgeTTS("en-US-AvaNeural", rate="+5%"))  # doctest: +SKIP
    """

    def __init__(self, voice: str = "en-US-AvaNeural", *, rate: str = "+0%",
                 pitch: str = "+0Hz", volume: str = "+0%",
                 tokenizer: tokenize.SentenceTokenizer | None = None) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=True),
                         sample_rate=SAMPLE_RATE, num_channels=1)
        self.voice, self.rate, self.pitch, self.volume = voice, rate, pitch, volume
        self._tokenizer = tokenizer or tokenize.basic.SentenceTokenizer()

    @property
    def model(self) -> str:
        return self.voice

    @property
    def provider(self) -> str:
        return "edge-tts"

    def synthesize(self, text: str, *,
                   conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                   ) -> tts.ChunkedStream:
        return _EdgeChunked(tts=self, input_text=text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
               ) -> tts.SynthesizeStream:
        return _EdgeStream(tts=self, conn_options=conn_options)

    async def speak(self, text: str, emitter: tts.AudioEmitter, timeout: float) -> None:
        """Synthesize ``text`` with one edge request, pushing its MP3 as it arrives."""
        import edge_tts

        configure_client()
        communicate = edge_tts.Communicate(text, self.voice, rate=self.rate,
                                           pitch=self.pitch, volume=self.volume)
        try:
            async with asyncio.timeout(timeout):
                async for chunk in communicate.stream():
                    if chunk["type"] == "audio" and chunk.get("data"):
                        emitter.push(chunk["data"])
        except (edge_tts.exceptions.EdgeTTSException, OSError, TimeoutError) as exc:
            raise APIConnectionError(f"edge-tts {self.voice}: {exc!r}") from exc


class _EdgeChunked(tts.ChunkedStream):
    def __init__(self, *, tts: EdgeTTS, input_text: str,
                 conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._edge = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=SAMPLE_RATE,
                                  num_channels=1, mime_type="audio/mpeg")
        await self._edge.speak(self.input_text, output_emitter, self._conn_options.timeout)
        output_emitter.flush()


class _EdgeStream(tts.SynthesizeStream):
    def __init__(self, *, tts: EdgeTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._edge = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=SAMPLE_RATE,
                                  num_channels=1, mime_type="audio/mpeg", stream=True)
        sentences = self._edge._tokenizer.stream()

        async def feed() -> None:
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    sentences.flush()
                else:
                    sentences.push_text(data)
            sentences.end_input()

        feeder = asyncio.create_task(feed())
        try:
            output_emitter.start_segment(segment_id=utils.shortuuid())
            async for sentence in sentences:
                self._mark_started()
                await self._edge.speak(sentence.token, output_emitter,
                                       self._conn_options.timeout)
                output_emitter.flush()
            output_emitter.end_segment()
            await feeder
        finally:
            await utils.aio.cancel_and_wait(feeder)
            await sentences.aclose()
