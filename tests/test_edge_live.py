"""greetkit.agents.EdgeTTS (greetkit/edge_live.py): an edge voice streaming in a real
AgentSession, against greetkit's edge protocol server (real espeak-ng speech as MP3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("edge_tts")

from edge_server import EdgeServer, serving
from livekit import rtc
from livekit_capture import CaptureOutput, started_session

from greetkit.agents import EdgeTTS
from greetkit.loudness import integrated_loudness

LONG = ("Thank you for calling the help line. Your order left our warehouse this morning. "
        "It should reach you on Thursday before noon. Is there anything else I can do today?")


class TimedCapture(CaptureOutput):
    """CaptureOutput that notes the wall-clock time of the first frame it receives."""

    first_frame_at: float | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.time()
        await super().capture_frame(frame)


@pytest.fixture
def edge_server() -> Iterator[EdgeServer]:
    with serving() as server:
        yield server


def test_edge_tts_streams_the_first_sentence_before_the_last_is_synthesized(
        edge_server: EdgeServer) -> None:
    """A four-sentence reply: one edge request per sentence, with the session's first audio
    frame arriving before the last sentence's request was even made; the audio is speech with
    the configured voice and prosody."""
    live = EdgeTTS("en-US-AvaNeural", rate="+10%", pitch="-5Hz")

    async def main() -> TimedCapture:
        sink = TimedCapture(48000)
        async with started_session(live, sink, instructions="Help the caller.") as session:
            await session.say(LONG)
        return sink

    sink = asyncio.run(asyncio.wait_for(main(), 120))
    requests = [r for r in edge_server.requests if r.kind == "ws" and r.ssml]
    assert len(requests) == 4, [r.ssml for r in requests]
    assert all("(en-US, AvaNeural)" in r.ssml[0] and "rate='+10%'" in r.ssml[0]
               and "pitch='-5Hz'" in r.ssml[0] for r in requests), requests[0].ssml
    assert "Thursday" in requests[2].ssml[0]
    assert sink.first_frame_at is not None
    lead = requests[-1].started - sink.first_frame_at
    pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in sink.segments[0]])
    rate = sink.segments[0][0].sample_rate
    seconds = pcm.shape[0] / rate
    level = integrated_loudness(pcm.astype(np.float32) / 32768.0, rate)
    print(f"\nfirst audio {lead * 1000:.0f} ms before the last sentence's request; "
          f"{seconds:.2f} s of speech at {level:.2f} LUFS")
    assert lead > 0
    assert seconds > 6.0 and level > -40.0


SPEC = """\
version: 1
defaults: {engine: edge, language: en}
languages:
  en: {voices: {edge: en-US-AvaNeural, espeak: en-us}}
phrases:
  default:
    en: "Hi! I'm Xiaozhi! Welcome to the help line, it is good to hear from you."
"""


def test_an_edge_banks_live_tts_is_edge_at_the_clips_level(
        edge_server: EdgeServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """bank.live_tts() of an edge-built bank speaks through EdgeTTS with the clips' voice; in
    a real AgentSession a clip and the live sentence after it are within 1 LU."""
    from greetkit.build import build
    from greetkit.loader import load

    monkeypatch.setenv("GREETKIT_EDGE_BACKOFF", "0.002")
    (tmp_path / "voices.yaml").write_text(SPEC, encoding="utf-8")
    result = build(tmp_path / "voices.yaml", tmp_path / "greetings")
    assert not result.drafts and not result.failed, (result.drafts, result.failed)
    bank = load(tmp_path / "greetings")
    live = bank.live_tts("en")
    assert isinstance(live.inner, EdgeTTS) and live.inner.voice == "en-US-AvaNeural"

    async def main() -> CaptureOutput:
        sink = CaptureOutput(48000)
        async with started_session(live, sink, instructions="Help the caller.") as session:
            handle = bank.say(session, "default", "en")
            assert handle is not None
            await handle
            await session.say(LONG)
        return sink

    sink = asyncio.run(asyncio.wait_for(main(), 120))
    rate = sink.segments[0][0].sample_rate
    clip, spoken = (integrated_loudness(sink.pcm(i).astype(np.float32) / 32768.0, rate)
                    for i in (0, 1))
    print(f"\nedge clip {clip:.2f} LUFS, EdgeTTS live {spoken:.2f} LUFS, "
          f"difference {abs(clip - spoken):.2f} LU (live gain {live.gain_db:+.2f} dB)")
    assert abs(clip - spoken) <= 1.0
    assert any("Thursday" in r.ssml[0] for r in edge_server.requests if r.ssml)
