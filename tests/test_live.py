"""bank.live_tts (greetkit/live.py): the clips' engine speaking live, at the clips' loudness.

A real ``AgentSession`` (no room; audio captured by tests/test_agents.CaptureOutput) speaks a
built clip through ``bank.say`` and then new sentences through ``bank.live_tts()``, which wraps
the real livekit-plugins-openai pointed at the loopback speech server. The server serves its
espeak-ng speech 8 dB softer than espeak's own level, so an unleveled live TTS would jump.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai_speech_server import SpeechServer, agent_spec, serving

pytest.importorskip("livekit.plugins.openai")

from livekit_capture import CaptureOutput, started_session

from greetkit.build import build
from greetkit.loader import load
from greetkit.loudness import integrated_loudness

SPEC = """\
languages:
  en: {voices: {agent: alloy, espeak: en-us}}
phrases:
  default:
    en: "Hi! I'm Xiaozhi! Welcome to the help line, it is good to hear from you."
"""
LIVE = "Thank you for waiting. I can check your order status, or book a new delivery today."


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def lufs(pcm: np.ndarray[Any, np.dtype[np.int16]], rate: int) -> float:
    return integrated_loudness(pcm.astype(np.float32) / 32768.0, rate)


def build_bank(tmp_path: Path, server: SpeechServer) -> Path:
    (tmp_path / "voices.yaml").write_text(agent_spec(SPEC, server.base_url), encoding="utf-8")
    result = build(tmp_path / "voices.yaml", tmp_path / "greetings")
    assert not result.drafts and not result.failed, (result.drafts, result.failed)
    # A phrase whose clip is missing: its text is in the manifest, so say() speaks it live.
    manifest = tmp_path / "greetings" / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["texts"]["thanks"] = {"en": "Thank you for calling."}
    manifest.write_text(json.dumps(data), encoding="utf-8")
    return tmp_path / "greetings"


def test_manifest_records_the_engine_entry_and_its_level(tmp_path: Path) -> None:
    """The build stores the engine's module:callable, options, plugin version and own level."""
    with serving(gain_db=-8.0) as server:
        out = build_bank(tmp_path, server)
    record = json.loads((out / "manifest.json").read_text())["engines"]["agent"]
    assert record["livekit"] == "livekit.plugins.openai:TTS"
    assert record["options"]["model"] == "gpt-4o-mini-tts"
    assert record["plugin"].startswith("livekit-plugins-openai==1.8.")
    assert -45.0 < record["lufs"] < -20.0  # 8 dB under espeak's own level, well below -18


def test_clip_then_live_speech_stay_within_one_lu(tmp_path: Path) -> None:
    """bank.say of a clip, then the same engine live: integrated loudness within 1 LU; the
    missing clip's fallback is spoken by the same engine (the server sees its text)."""
    with serving(gain_db=-8.0) as server:
        bank = load(build_bank(tmp_path, server))
        live = bank.live_tts("en")

        async def main() -> CaptureOutput:
            sink = CaptureOutput(48000)
            async with started_session(live, sink) as session:
                handle = bank.say(session, "default", "en")
                assert handle is not None
                await handle
                await session.say(LIVE)
                fallback = bank.say(session, "thanks", "en")
                assert fallback is not None
                await fallback
            return sink

        sink = asyncio.run(asyncio.wait_for(main(), 120))
        inputs = " ".join(r["input"] for r in server.requests)
        voices = {(r["model"], r["voice"]) for r in server.requests}
    rate = sink.segments[0][0].sample_rate
    clip_lufs, live_lufs = lufs(sink.pcm(0), rate), lufs(sink.pcm(1), rate)
    print(f"\nclip {clip_lufs:.2f} LUFS, live {live_lufs:.2f} LUFS, "
          f"difference {abs(clip_lufs - live_lufs):.2f} LU (live gain {live.gain_db:+.2f} dB)")
    assert live.gain_db > 5.0  # the engine's own level is far below the target
    assert abs(clip_lufs - live_lufs) <= 1.0
    assert "book a new delivery" in inputs and "Thank you for calling." in inputs
    assert voices == {("gpt-4o-mini-tts", "alloy")}
    assert len(sink.segments) == 3
