"""The embedded espeak-ng engine (greetkit/engines/espeak.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from greetkit.engines import get_engine
from greetkit.engines.base import Engine, RenderRequest
from greetkit.engines.espeak import espeak_parameters, voice_for_language
from greetkit.errors import EngineError, EngineUnavailable


def render(text: str, voice: str, **options: str) -> tuple[np.ndarray, int]:
    engine = get_engine("espeak")
    out = asyncio.run(engine.render(RenderRequest(key="k", text=text, language="x", voice=voice,
                                                  options=options)))
    return out.samples, out.sample_rate


def test_english_and_mandarin_render_real_speech() -> None:
    """Both shipped languages produce seconds of non-silent audio at espeak's 22.05 kHz."""
    for text, voice in (("Hi! I'm Xiaozhi!", "en-us"), ("你好！我是小智！", "cmn")):
        samples, rate = render(text, voice)
        assert rate == 22050
        assert 0.8 < samples.shape[0] / rate < 4.0
        assert samples.dtype == np.float32 and 0.1 < np.abs(samples).max() <= 1.0


def test_rate_option_changes_duration() -> None:
    """rate: +50% speaks faster than the default."""
    normal, _ = render("Hello friend, how are you today?", "en-us")
    fast, _ = render("Hello friend, how are you today?", "en-us", rate="+50%")
    assert fast.shape[0] < 0.8 * normal.shape[0]


def test_unknown_voice_is_not_retryable() -> None:
    """A voice espeak lacks fails at render with retryable False."""
    with pytest.raises(EngineError) as info:
        render("hello", "xx-nope")
    assert info.value.retryable is False


def test_engine_satisfies_protocol_and_registry() -> None:
    """The registry returns one shared instance implementing the Protocol."""
    engine = get_engine("espeak")
    assert isinstance(engine, Engine) and engine is get_engine("espeak")
    assert engine.offline and "espeak-ng 1." in engine.version()
    with pytest.raises(EngineUnavailable, match="did you mean 'espeak'"):
        get_engine("espeek")


def test_voice_for_language_maps_codes() -> None:
    """Language codes map to the espeak voice a listener expects."""
    assert voice_for_language("en") == "en-us"
    assert voice_for_language("zh-CN") == "cmn"
    assert voice_for_language("de") == "de"
    assert voice_for_language("tlh") is None


def test_edge_style_parameters_map_to_espeak_units() -> None:
    """'+20%' rate scales 175 wpm; '+20Hz' pitch moves 10 steps; defaults are neutral."""
    assert espeak_parameters({}) == (175, 50, 100)
    assert espeak_parameters({"rate": "+20%", "pitch": "+20Hz", "volume": "-50%"}) == (210, 60, 50)


def test_a_render_does_not_depend_on_earlier_renders() -> None:
    """The same request gives the same samples whatever was rendered before it in the process
    (espeak-ng's C state used to carry over: same text, different samples and lengths)."""
    first, _ = render("Hola, soy Xiaozhi.", "es")
    render("Hi! I'm Xiaozhi!", "en-us", rate="+20%")
    render("你好！我是小智！", "cmn")
    again, _ = render("Hola, soy Xiaozhi.", "es")
    third, _ = render("Hola, soy Xiaozhi.", "es")
    assert first.shape == again.shape == third.shape
    assert np.array_equal(first, again) and np.array_equal(first, third)
