"""greetkit.testing, used the way a user tests their own agent with it.

Banks are built with :func:`greetkit.testing.build_bank` into ``tmp_path``, loaded with
:func:`greetkit.loader.load` and played; the fake engine's audio goes through the real build
(spec validation, DSP chain, store) and is measured with greetkit's BS.1770 meter.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from livekit_capture import CaptureOutput, started_session

from greetkit.agents import EspeakTTS
from greetkit.build import build
from greetkit.engines import engine_names, get_engine
from greetkit.errors import EngineUnavailable, SpecError
from greetkit.loader import load
from greetkit.loudness import integrated_loudness, true_peak
from greetkit.params import DspParams
from greetkit.testing import (
    EDGE_SILENCE_SECONDS,
    PAUSE_SECONDS,
    TONE_SECONDS,
    FakeEngine,
    build_bank,
    fake_engine,
    fake_speech,
)

PHRASES = {"welcome": "Hello there.", "bye": {"en": "Goodbye.", "fr": "Au revoir."}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bank of PHRASES plus a fallback, built once with the fake engine."""
    return build_bank(tmp_path_factory.mktemp("bank"), PHRASES, fallback="One moment please.")


def test_built_bank_selects_each_phrase_in_each_language(store: Path) -> None:
    """Every phrase x language of the call is a clip with its text, at both default rates;
    an unknown phrase selects the fallback clip."""
    bank = load(store, verify=True)
    assert sorted(bank) == ["en_bye", "en_welcome", "fallback", "fr_bye"]
    assert bank.unavailable == {}
    for phrase, language, text in [("welcome", "en", "Hello there."),
                                   ("bye", "en", "Goodbye."), ("bye", "fr", "Au revoir.")]:
        sel = bank.select(phrase, language, sample_rate=16000)
        assert sel.clip is not None and sel.clip.key == f"{language}_{phrase}"
        assert sel.text == text and sel.sample_rate == 16000 and not sel.live
        assert sel.clip.rates == (48000, 16000)
    other = bank.select("weather", "en")
    assert other.clip is not None and other.clip.key == "fallback"


def test_fake_audio_goes_through_the_real_dsp_chain(store: Path) -> None:
    """A stored clip of fake speech is at the speech preset's loudness (-18 LUFS within
    0.1 LU, BS.1770-4) under its -1.5 dBTP ceiling, and the engine's quarter second of
    silence at each end is trimmed to the chain's 80 ms pad (within one 10 ms frame)."""
    params = DspParams()
    clip = load(store)["en_welcome"]
    x = clip.pcm().astype(np.float64) / 32768
    assert integrated_loudness(x, 48000) == pytest.approx(params.target_lufs, abs=0.1)
    assert true_peak(x, 48000) <= params.true_peak_ceiling_db
    sound = len("Hello there.".replace(" ", "")) * TONE_SECONDS + PAUSE_SECONDS
    assert clip.duration == pytest.approx(sound + 2 * params.pad_ms / 1000, abs=0.02)
    assert clip.duration < sound + 2 * EDGE_SILENCE_SECONDS - 0.3


def test_fake_speech_is_deterministic_and_follows_the_text() -> None:
    """The same text gives the same samples; the length is a tone per character, a pause
    per space and silence around; another text gives other samples."""
    a = fake_speech("Hello there.", 24000)
    assert a.dtype == np.float32 and np.array_equal(a, fake_speech("Hello there.", 24000))
    assert a.shape[0] == round(24000 * (11 * TONE_SECONDS + PAUSE_SECONDS
                                        + 2 * EDGE_SILENCE_SECONDS))
    assert 0.1 < float(np.max(np.abs(a))) <= 1.0
    b = fake_speech("Hello thera.", 24000)
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_fake_engine_is_usable_by_name_only_inside_its_block(tmp_path: Path) -> None:
    """Inside ``fake_engine()`` a voices.yaml may name engine ``fake``; the build renders
    every clip through it (recorded in ``requests``); afterwards the name is unknown again."""
    spec = tmp_path / "voices.yaml"
    spec.write_text("version: 1\ndefaults: {engine: fake}\nlanguages:\n"
                    "  en: {voices: {fake: any}}\nphrases:\n  hi: {en: Hi there.}\n")
    with fake_engine() as engine:
        assert get_engine("fake") is engine and "fake" in engine_names()
        result = build(spec)
    assert result.failed == {} and result.drafts == {}
    assert [(r.key, r.text, r.voice) for r in engine.requests] == [("en_hi", "Hi there.", "any")]
    assert "fake" not in engine_names()
    with pytest.raises(EngineUnavailable, match="unknown engine 'fake'"):
        get_engine("fake")


def test_fake_engine_stands_in_for_edge_to_build_a_real_spec_offline(project: Path) -> None:
    """``fake_engine("edge")`` builds the shipped voices.yaml (edge voices, templates,
    Chinese) with no network and no drafts; outside the block edge is the real engine."""
    with fake_engine("edge") as engine:
        result = build(project / "voices.yaml")
    assert result.failed == {} and result.drafts == {}
    assert result.manifest is not None
    assert sorted(r.key for r in engine.requests) == sorted(c.key for c in result.manifest.clips)
    assert get_engine("edge") is not engine and not isinstance(get_engine("edge"), FakeEngine)


def test_build_bank_again_reuses_every_clip(store: Path) -> None:
    """Building the same phrases into the same directory renders nothing: the clips are
    reused as ``greetkit build`` reuses them."""
    engine = FakeEngine()
    again = build_bank(store.parent, PHRASES, fallback="One moment please.", engine=engine)
    assert again == store and engine.requests == []


def test_build_bank_refuses_a_bad_phrase_name(tmp_path: Path) -> None:
    """A phrase name voices.yaml would refuse is a SpecError naming it; nothing is built."""
    with pytest.raises(SpecError, match="phrase name 'Bad Name' is not allowed"):
        build_bank(tmp_path, {"Bad Name": "Hello."})
    assert not (tmp_path / "greetings").exists()


def test_a_built_bank_plays_in_a_real_agent_session(store: Path) -> None:
    """The bank greets in a real livekit AgentSession: ``bank.say`` plays the 16 kHz clip's
    samples exactly, as a user's agent test would check."""
    bank = load(store)

    async def main() -> None:
        out = CaptureOutput(16000)
        async with started_session(EspeakTTS(sample_rate=16000), out) as session:
            handle = bank.say(session, "bye", language="fr")
            assert handle is not None
            await asyncio.wait_for(handle.wait_for_playout(), 10)
        assert np.array_equal(out.pcm(), bank["fr_bye"].pcm(16000))

    asyncio.run(main())
