"""A Pipecat bot that greets each caller from the greeting bank the moment they connect
(pipecat-ai 1.14, ``pip install 'greetkit[pipecat]'``).

Build the bank first (``greetkit build``; add the transport's rate to ``sample_rates`` in
voices.yaml, e.g. 8000 for Twilio/Telnyx, 16000 or 48000 for WebRTC), then::

    python examples/pipecat_bot.py          # a websocket bot on ws://127.0.0.1:8765

The greeting is the clip for the caller's language, played sample for sample at the
pipeline's output rate, not interruptible, and added to the LLM context as the assistant's
first message. Everything the LLM says afterwards goes to the live TTS you pass as ``live``.

Fill in the three placeholders (``make_stt``, ``make_llm``, ``make_live_tts``) with your
services (e.g. Deepgram, OpenAI, Cartesia); the bot runs without them as a greeter only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.server import WebsocketServerParams, WebsocketServerTransport
from pipecat.workers.runner import WorkerRunner

import greetkit
from greetkit.pipecat import BankTTS

#: The pipeline's output rate: have a variant at this rate in the bank for exact playback.
OUTPUT_RATE = int(os.environ.get("BOT_OUTPUT_RATE", "16000"))


def make_stt() -> Any | None:
    """Your speech-to-text service, e.g. ``DeepgramSTTService(api_key=...)``."""
    return None


def make_llm() -> Any | None:
    """Your LLM service, e.g. ``OpenAILLMService(api_key=..., model=...)``."""
    return None


def make_live_tts() -> Any | None:
    """Your TTS for everything that is not a clip, e.g. ``CartesiaHttpTTSService(...)``."""
    return None


async def main() -> None:
    logging.basicConfig(level=logging.INFO)  # greetkit logs one line per greeting
    bank = greetkit.load(os.environ.get("GREETKIT_BANK", "greetings"))

    transport = WebsocketServerTransport(
        params=WebsocketServerParams(audio_in_enabled=True, audio_out_enabled=True,
                                     serializer=ProtobufFrameSerializer()),
        host="127.0.0.1", port=8765)
    tts = BankTTS(bank, live=make_live_tts())
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(context)
    stt, llm = make_stt(), make_llm()

    processors: list[Any] = [transport.input()]
    processors += [stt] if stt is not None else []
    processors.append(aggregators.user())
    processors += [llm] if llm is not None else []
    processors += [tts, transport.output(), aggregators.assistant()]

    latency = UserBotLatencyObserver()
    worker = PipelineWorker(Pipeline(processors),
                            params=PipelineParams(audio_out_sample_rate=OUTPUT_RATE),
                            observers=[latency])

    @latency.event_handler("on_first_bot_speech_latency")
    async def on_first_speech(observer: Any, seconds: float) -> None:
        logging.info("client connected -> first bot speech: %.0f ms", seconds * 1000)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport: Any, client: Any) -> None:
        # The caller's language, when your signalling carries it (e.g. a query parameter).
        await worker.queue_frame(tts.greeting("default", language=None))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: Any, client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    asyncio.run(main())
