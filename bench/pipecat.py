"""Pipecat bench (issue 14): queue -> first ``write_audio_frame``, bank vs live TTS.

    python bench/pipecat.py [runs]     # ~1 min on 2 cores; builds the test bank in a temp dir

In one process, a real pipecat-ai pipeline ``[tts, capturing output transport]`` at 24 kHz,
repeated ``runs`` times (default 7) for each side:

* bank: ``greetkit.pipecat.BankTTS`` queued with ``tts.greeting("default", "en")``;
* live: the same text as a ``TTSSpeakFrame`` to a live espeak-ng ``TTSService``
  (tests/pipecat_live.py: real synthesis, resampled to the pipeline rate), the baseline.

The clock starts just before ``worker.queue_frame`` and stops at the transport's first
``write_audio_frame``. Medians side by side and their ratio. Not a test: nothing is asserted.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory is sys.path[0] and its name would shadow pipecat.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "tests"))

from bank import make_store  # noqa: E402
from pipecat.frames.frames import EndFrame, Frame, TTSSpeakFrame  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402
from pipecat_live import CapturingOutput, EspeakTTS  # noqa: E402

import greetkit  # noqa: E402
from greetkit.pipecat import BankTTS  # noqa: E402

RATE = 24000


async def once(tts: Any, frame_of: Any) -> float:
    """Seconds from queue_frame to the first write_audio_frame."""
    out = CapturingOutput()
    worker = PipelineWorker(Pipeline([tts, out]), params=PipelineParams(audio_out_sample_rate=RATE),
                            cancel_on_idle_timeout=False)
    queued: list[float] = []

    async def script() -> None:
        frame = frame_of()
        queued.append(time.perf_counter())
        await worker.queue_frame(frame)
        await worker.queue_frame(EndFrame())

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: PipelineWorker, frame: Frame) -> None:
        asyncio.get_running_loop().create_task(script())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), timeout=60)
    assert out.first_write is not None
    return out.first_write - queued[0]


def main() -> None:
    from loguru import logger

    logger.remove()  # pipecat's DEBUG lines would dominate the run
    logging.getLogger("greetkit").setLevel(logging.WARNING)
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    store = make_store(Path(tempfile.mkdtemp(prefix="greetkit-bench-")))
    bank = greetkit.load(store)
    text = bank["en_default"].text
    sides: dict[str, list[float]] = {"bank": [], "live": []}
    for _ in range(runs):
        tts = BankTTS(bank, live=EspeakTTS())
        sides["bank"].append(asyncio.run(once(tts, lambda t=tts: t.greeting("default", "en"))))
        sides["live"].append(asyncio.run(once(EspeakTTS(), lambda: TTSSpeakFrame(text))))
    print(f"queue -> first write_audio_frame, {runs} runs each, {RATE} Hz, text {text!r}")
    print(f"{'':6} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, xs in sides.items():
        print(f"{name:6} {statistics.median(xs) * 1e3:10.2f} {min(xs) * 1e3:8.2f} "
              f"{max(xs) * 1e3:8.2f}")
    ratio = statistics.median(sides["live"]) / statistics.median(sides["bank"])
    print(f"live espeak / bank: {ratio:.1f}x (baseline: live espeak-ng TTSService)")


if __name__ == "__main__":
    main()
