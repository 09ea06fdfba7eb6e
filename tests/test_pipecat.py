"""greetkit.pipecat.BankTTS in real pipecat-ai pipelines (no network): exact PCM through a
capturing output transport, the greeting in the LLMContext, interruptions, live fallback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipecat.frames.frames import EndFrame, Frame, InterruptionFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
)
from pipecat.workers.runner import WorkerRunner
from pipecat_live import CapturingOutput, EspeakTTS

import greetkit
from greetkit.pipecat import BankTTS

RATES = (48000, 24000, 16000, 8000)


@pytest.fixture(scope="module")
def rates_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared test bank's spec built with every rate Pipecat transports use."""
    from bank import BUILD_SPEC

    from greetkit.build import build

    root = tmp_path_factory.mktemp("pipecat_bank")
    spec = BUILD_SPEC.replace("[48000, 24000]", "[48000, 24000, 16000, 8000]")
    (root / "voices.yaml").write_text(spec, encoding="utf-8")
    result = build(root / "voices.yaml", root / "greetings")
    assert not result.failed, result.failed
    return root / "greetings"


async def _run(tts: BankTTS, rate: int,
               script: Callable[..., Any]) -> tuple[CapturingOutput, LLMContext]:
    """Run [tts, capturing output, assistant aggregator] at ``rate`` with ``script``."""
    out = CapturingOutput()
    context = LLMContext()
    pair = LLMContextAggregatorPair(context)
    worker = PipelineWorker(Pipeline([tts, out, pair.assistant()]),
                            params=PipelineParams(audio_out_sample_rate=rate),
                            cancel_on_idle_timeout=False)

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: PipelineWorker, frame: Frame) -> None:
        asyncio.get_running_loop().create_task(script(worker, out))

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), timeout=60)
    return out, context


def _greet(tts: BankTTS, *args: Any, **kwargs: Any) -> Callable[..., Any]:
    async def script(worker: PipelineWorker, out: CapturingOutput) -> None:
        await worker.queue_frame(tts.greeting(*args, **kwargs))
        await worker.queue_frame(EndFrame())
    return script


def _assistant_text(context: LLMContext) -> list[str]:
    return [str(m.get("content")) for m in context.get_messages()
            if isinstance(m, dict) and m.get("role") == "assistant"]


def _speech(pcm: np.ndarray) -> np.ndarray:
    """The written PCM without the silence the transport writes after the bot stops."""
    nz = np.flatnonzero(pcm)
    return pcm[: nz[-1] + 1] if nz.size else pcm[:0]


@pytest.mark.parametrize("rate", RATES)
def test_clip_pcm_written_sample_exact(rates_store: Path, rate: int) -> None:
    """At each pipeline output rate the transport writes the stored variant sample for sample,
    followed only by silence."""
    bank = greetkit.load(rates_store)
    tts = BankTTS(bank, live=EspeakTTS())
    out, _ = asyncio.run(_run(tts, rate, _greet(tts, "default", "en")))
    want = bank["en_default"].pcm(rate)
    got = out.pcm
    assert {f.sample_rate for f in out.frames} == {rate}
    assert np.array_equal(got[: len(want)], want)
    assert not got[len(want):].any()
    assert tts.live is not None and tts.live.spoken == []  # type: ignore[attr-defined]


def test_greeting_text_lands_in_llm_context(rates_store: Path) -> None:
    """The assistant message in the LLMContext is the clip's text."""
    bank = greetkit.load(rates_store)
    tts = BankTTS(bank, live=EspeakTTS())
    _, context = asyncio.run(_run(tts, 24000, _greet(tts, "default", "zh")))
    assert _assistant_text(context) == [bank["zh_default"].text]


def _interrupt(tts: BankTTS, interruptible: bool) -> Callable[..., Any]:
    async def script(worker: PipelineWorker, out: CapturingOutput) -> None:
        await worker.queue_frame(tts.greeting("default", "en", interruptible=interruptible))
        while not out.frames:  # mid-greeting: right after the first write
            await asyncio.sleep(0.001)
        await worker.queue_frame(InterruptionFrame())
        await asyncio.sleep(0.2)
        await worker.queue_frame(EndFrame())
    return script


def test_interruption_does_not_cut_default_greeting(rates_store: Path) -> None:
    """An InterruptionFrame mid-greeting leaves a (default) non-interruptible greeting whole."""
    bank = greetkit.load(rates_store)
    tts = BankTTS(bank, live=EspeakTTS())
    out, _ = asyncio.run(_run(tts, 24000, _interrupt(tts, interruptible=False)))
    want = bank["en_default"].pcm(24000)
    assert np.array_equal(_speech(out.pcm), _speech(want))


def test_interruption_cuts_interruptible_greeting(rates_store: Path) -> None:
    """An InterruptionFrame mid-greeting cuts a greeting made with interruptible=True."""
    bank = greetkit.load(rates_store)
    tts = BankTTS(bank, live=EspeakTTS())
    out, _ = asyncio.run(_run(tts, 24000, _interrupt(tts, interruptible=True)))
    want = bank["en_default"].pcm(24000)
    got = _speech(out.pcm)
    assert 0 < len(got) < len(_speech(want))
    assert np.array_equal(got, want[: len(got)])


def _damage(store: Path, key: str, rate: int) -> None:
    data = (store / "manifest.json").read_text(encoding="utf-8")
    import json

    entry = next(c for c in json.loads(data)["clips"] if c["key"] == key)
    rel = entry["files"][str(rate)]["file"]
    path = store / rel
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # one flipped PCM byte: header intact, checksum wrong
    path.write_bytes(bytes(raw))


def test_damaged_clip_spoken_live(rates_store: Path, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """A clip whose file fails its checksum is spoken by the live service, with its words."""
    import shutil

    store = Path(shutil.copytree(rates_store, tmp_path / "greetings"))
    _damage(store, "en_bye", 24000)
    bank = greetkit.load(store)
    live = EspeakTTS()
    tts = BankTTS(bank, live=live)
    with caplog.at_level(logging.INFO, logger="greetkit"):
        out, context = asyncio.run(_run(tts, 24000, _greet(tts, "bye", "en")))
    assert live.spoken == ["Goodbye for now."]
    assert len(_speech(out.pcm)) > 24000 // 2  # more than half a second of real speech
    assert _assistant_text(context) == ["Goodbye for now."]
    assert "source=live" in caplog.text and "checksum" in caplog.text


def test_unknown_text_spoken_live(rates_store: Path) -> None:
    """Text that is no clip's text (an LLM reply) goes to the live service."""
    from pipecat.frames.frames import TTSSpeakFrame

    bank = greetkit.load(rates_store)
    live = EspeakTTS()
    tts = BankTTS(bank, live=live)

    async def script(worker: PipelineWorker, out: CapturingOutput) -> None:
        await worker.queue_frame(TTSSpeakFrame("The weather is sunny."))
        await worker.queue_frame(EndFrame())

    out, context = asyncio.run(_run(tts, 16000, script))
    assert live.spoken == ["The weather is sunny."]
    assert len(_speech(out.pcm)) > 16000 // 2
    assert _assistant_text(context) == ["The weather is sunny."]


def test_no_live_service_logs_once_and_finishes(rates_store: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Without ``live``, unknown text is skipped with one error log; the pipeline ends."""
    from pipecat.frames.frames import TTSSpeakFrame

    tts = BankTTS(greetkit.load(rates_store))

    async def script(worker: PipelineWorker, out: CapturingOutput) -> None:
        await worker.queue_frame(TTSSpeakFrame("One."))
        await worker.queue_frame(TTSSpeakFrame("Two."))
        await worker.queue_frame(EndFrame())

    with caplog.at_level(logging.ERROR, logger="greetkit"):
        out, _ = asyncio.run(_run(tts, 24000, script))
    assert not _speech(out.pcm).size
    errors = [r for r in caplog.records if "no live service" in r.getMessage()]
    assert len(errors) == 1
