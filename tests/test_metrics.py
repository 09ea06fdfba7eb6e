"""Greeting-time metrics (greetkit/metrics.py) read back through the OpenTelemetry SDK's
in-memory reader, from real says in a real AgentSession with a capturing output."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics as otel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from test_agents import session_with_capture

from greetkit import metrics
from greetkit.loader import load

_READER = InMemoryMetricReader()


@pytest.fixture(scope="module")
def reader() -> InMemoryMetricReader:
    """The process-wide provider with an in-memory reader (the API allows setting it once;
    greetkit's instruments are created through the API's proxy, so they follow it)."""
    otel.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    if not isinstance(otel.get_meter_provider(), MeterProvider):
        pytest.skip("another meter provider was installed first in this process")
    return _READER


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            if sm.scope.name != "greetkit":
                continue
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def test_clip_and_live_says_are_recorded_with_source_reason_and_version(
        built_store: Path, reader: InMemoryMetricReader) -> None:
    """A clip say records say→first-frame (source=clip, bank_version) in fine low buckets;
    a live say counts one live fallback by reason; LiveKit's reported playout is recorded."""
    bank = load(built_store)

    async def main() -> None:
        async with session_with_capture(48000) as (session, _out):
            for phrase in ("default", "thanks"):
                handle = bank.say(session, phrase, language="en")
                assert handle is not None
                await asyncio.wait_for(handle.wait_for_playout(), 20)

    asyncio.run(main())
    points = _points(reader)
    first = [p for p in points["greetkit.say.first_frame"]
             if p.attributes["source"] == "clip"]
    assert first and sum(p.count for p in first) >= 1
    point = first[0]
    assert point.attributes["framework"] == "livekit"
    assert point.attributes["bank_version"] == bank.version
    assert list(point.explicit_bounds)[:5] == list(metrics.BUCKETS[:5])
    assert 0 < point.min < 0.05  # a clip's first frame is milliseconds after say()
    fallbacks = {p.attributes["reason"]: p.value
                 for p in points["greetkit.say.live_fallbacks"]}
    assert fallbacks.get("no_clip", 0) >= 1
    playout = points.get("greetkit.say.playout", [])
    assert {p.attributes["source"] for p in playout} >= {"clip"}


def test_live_say_records_first_frame_where_livekit_reports_playout(
        built_store: Path, reader: InMemoryMetricReader) -> None:
    """A say spoken live (espeak-ng through the session's TTS) records say→first-frame with
    source=live from LiveKit's started_speaking_at, the same figure as its playout."""
    bank = load(built_store)

    def live_count(points: dict[str, list[Any]], name: str) -> int:
        return sum(p.count for p in points.get(name, [])
                   if p.attributes["source"] == "live"
                   and p.attributes["framework"] == "livekit")

    before = _points(reader)

    async def main() -> None:
        async with session_with_capture(48000) as (session, _out):
            handle = bank.say(session, "thanks", language="en")  # no clip: spoken live
            assert handle is not None
            await asyncio.wait_for(handle.wait_for_playout(), 20)

    asyncio.run(main())
    after = _points(reader)
    assert live_count(after, "greetkit.say.first_frame") == \
        live_count(before, "greetkit.say.first_frame") + 1
    assert live_count(after, "greetkit.say.playout") == \
        live_count(before, "greetkit.say.playout") + 1
    live = [p for p in after["greetkit.say.first_frame"]
            if p.attributes["source"] == "live" and p.attributes["framework"] == "livekit"]
    assert live[0].attributes["bank_version"] == bank.version
    assert 0 < live[0].min < 20  # espeak-ng's first audio, after say(), within the wait


def test_recording_without_a_provider_or_with_bad_values_never_raises() -> None:
    """The record functions swallow anything (a metric must never break a greeting)."""
    metrics.record_first_frame(float("nan"), framework="x", source="clip", bank_version=None)
    metrics.record_live_fallback("r", framework="x", bank_version=None)
    metrics.record_playout(-1.0, framework="x", source="live", bank_version=3)


def test_pipecat_counts_greeting_fallbacks_by_label_not_llm_replies(
        built_store: Path, tmp_path: Path, reader: InMemoryMetricReader) -> None:
    """In a real Pipecat pipeline, a greeting whose 24 kHz clip fails its checksum counts one
    live fallback labelled ``bad_checksum`` (never the free-text problem); an ordinary LLM
    reply spoken live counts none; both record say→first-frame with source=live."""
    import shutil

    from pipecat.frames.frames import EndFrame, TTSSpeakFrame
    from pipecat_live import EspeakTTS
    from test_pipecat import _damage, _run

    from greetkit.pipecat import BankTTS

    store = Path(shutil.copytree(built_store, tmp_path / "greetings"))
    _damage(store, "en_default", 24000)
    bank = load(store)
    live = EspeakTTS()
    tts = BankTTS(bank, live=live)

    async def script(worker: Any, out: Any) -> None:
        await worker.queue_frame(tts.greeting("default", "en"))
        await worker.queue_frame(TTSSpeakFrame("The weather is sunny."))
        await worker.queue_frame(EndFrame())

    asyncio.run(_run(tts, 24000, script))
    assert live.spoken == [bank["en_default"].text, "The weather is sunny."]
    points = _points(reader)
    fallbacks = {p.attributes["reason"]: p.value
                 for p in points["greetkit.say.live_fallbacks"]
                 if p.attributes["framework"] == "pipecat"}
    assert fallbacks == {"bad_checksum": 1}
    live_first = [p for p in points["greetkit.say.first_frame"]
                  if p.attributes["framework"] == "pipecat" and p.attributes["source"] == "live"]
    assert sum(p.count for p in live_first) == 2


def test_fallback_reason_labels_are_a_small_fixed_set() -> None:
    """Each kind of live reason maps to its label; unknown free text maps to 'unavailable'."""
    assert metrics.fallback_reason("disabled", "GREETKIT_DISABLE is set") == "disabled"
    assert metrics.fallback_reason("exact", "x.wav: checksum mismatch (corrupted)") == (
        "bad_checksum")
    assert metrics.fallback_reason("exact", "no clip built for 'bye' in 'en'") == "no_clip"
    assert metrics.fallback_reason("none", None) == "no_clip"
    assert metrics.fallback_reason("exact", "something odd 'with text'") == "unavailable"
    assert set(map(lambda r: metrics.fallback_reason("exact", r), [
        "a", "b", "checksum", "no such file"])) <= set(metrics.FALLBACK_REASONS)
