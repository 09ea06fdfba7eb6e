"""The render stage (greetkit/render.py): engine choice, the draft fallback, the length cap
and mastering at every rate, with the real espeak engine and a scriptable online engine."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from greetkit.engines import declare
from greetkit.engines.base import RenderedAudio, RenderRequest
from greetkit.errors import AudioError, EngineError, EngineUnavailable
from greetkit.loudness import measure
from greetkit.render import Choice, RenderJob, choose, key_of, render_clip, synthesize
from greetkit.spec import LOUDNESS_PRESETS, MAX_CLIP_SECONDS, ClipSpec, Loudness


class ScriptedEngine:
    """An online engine whose renders do what the test says: fail, or return ``seconds``
    of a 300 Hz tone."""

    name: ClassVar[str] = "scripted"
    max_concurrency: ClassVar[int] = 1
    offline: ClassVar[bool] = False

    def __init__(self, *, fail: str | None = None, seconds: float = 1.0) -> None:
        self.fail = fail
        self.seconds = seconds
        self.calls: list[str] = []

    def version(self) -> str:
        return "scripted-1"

    def check_available(self) -> None:
        return None

    def validate_voice(self, voice: str, language: str, *,
                       project_dir: Path | None = None) -> str | None:
        return None

    async def render(self, request: RenderRequest) -> RenderedAudio:
        self.calls.append(request.voice)
        if self.fail:
            raise EngineError(self.fail, engine=self.name, retryable=True)
        t = np.arange(int(16000 * self.seconds)) / 16000
        return RenderedAudio((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)


@pytest.fixture
def scripted() -> Iterator[ScriptedEngine]:
    engine = ScriptedEngine()
    declare({"scripted": engine})
    yield engine
    declare({})


def clip(engine: str = "espeak", voice: str = "en-us",
         draft_voice: str | None = "en-us") -> ClipSpec:
    return ClipSpec(key="en_hello", phrase="hello", language="en", text="Hello there, friend.",
                    engine=engine, voice=voice, draft_voice=draft_voice, options={},
                    loudness=Loudness(*LOUDNESS_PRESETS["speech"], "speech"))


def job(c: ClipSpec, rates: tuple[int, ...] = (48000,)) -> RenderJob:
    return RenderJob(clip=c, choice=choose(c, None), sample_rates=rates)


def test_choose_keeps_the_clips_engine_while_it_is_usable() -> None:
    """No reason to draft: the clip's own engine and voice, not a draft."""
    choice = choose(clip("edge", "en-US-AvaNeural"), None)
    assert choice == Choice("edge", "en-US-AvaNeural") and not choice.draft


def test_choose_drafts_an_unusable_online_engine_with_espeak() -> None:
    """An online engine that cannot be used gives the espeak draft voice, with the reason."""
    choice = choose(clip("edge", "en-US-AvaNeural"), "edge unavailable: no network")
    assert choice == Choice("espeak", "en-us", "edge unavailable: no network")


def test_choose_does_not_draft_an_offline_engine_or_without_a_draft_voice() -> None:
    """An offline engine failing is a real error, and without an espeak voice there is
    nothing to draft with: both raise with the reason as the message."""
    with pytest.raises(EngineUnavailable, match=r"^espeak unavailable: broken$"):
        choose(clip("espeak"), "espeak unavailable: broken")
    with pytest.raises(EngineUnavailable, match=r"^edge unavailable: x$"):
        choose(clip("edge", "en-US-AvaNeural", draft_voice=None), "edge unavailable: x")


def test_failed_online_render_becomes_an_espeak_draft(scripted: ScriptedEngine) -> None:
    """The online engine fails after its retries: espeak renders the draft, the reason names
    the engine and its error, and the content key is the draft's own."""
    import asyncio

    scripted.fail = "HTTP 503"
    c = clip("scripted", "Ava")
    take = asyncio.run(synthesize(job(c)))
    assert scripted.calls == ["Ava"]
    assert take.choice == Choice("espeak", "en-us", "scripted failed: HTTP 503")
    assert take.content_key == key_of(c, take.choice) != key_of(c, choose(c, None))
    assert take.audio.duration > 0.5


def test_failed_render_without_a_draft_names_the_engine(scripted: ScriptedEngine) -> None:
    """No draft voice: the engine's error comes out prefixed with the engine's name, keeping
    whether a retry can help."""
    import asyncio

    scripted.fail = "HTTP 503"
    with pytest.raises(EngineError, match=r"^scripted: HTTP 503$") as info:
        asyncio.run(synthesize(job(clip("scripted", "Ava", draft_voice=None))))
    assert info.value.retryable


def test_failed_draft_says_both_failures(scripted: ScriptedEngine) -> None:
    """When the espeak draft fails too, one error carries both reasons."""
    import asyncio

    scripted.fail = "HTTP 503"
    with pytest.raises(EngineError, match=r"^scripted failed: HTTP 503; draft failed too: "):
        asyncio.run(synthesize(job(clip("scripted", "Ava", draft_voice="no-such-voice"))))


def test_runaway_take_is_refused_before_any_dsp(scripted: ScriptedEngine) -> None:
    """A take longer than MAX_CLIP_SECONDS is an AudioError naming the engine and the cap."""
    scripted.seconds = MAX_CLIP_SECONDS + 1
    with pytest.raises(AudioError, match=r"^scripted produced 61 s of audio; a clip may last "
                                         r"at most 60 s"):
        render_clip(job(clip("scripted", "Ava")))


def test_render_clip_masters_every_rate_to_the_target(scripted: ScriptedEngine) -> None:
    """One output per rate, in the job's order, each int16 at its rate with BS.1770
    integrated loudness within 0.05 LU of the -18 LUFS target and true peak under -1.5 dBTP."""
    rendered = render_clip(job(clip("scripted", "Ava"), rates=(48000, 16000)))
    assert [o.sample_rate for o in rendered.outputs] == [48000, 16000]
    assert rendered.engine_version == "scripted-1" and not rendered.choice.draft
    for out in rendered.outputs:
        assert out.pcm.dtype == np.int16
        m = measure(out.pcm, out.sample_rate)
        assert abs(m.integrated_lufs - -18.0) <= 0.05
        assert m.true_peak_db <= -1.5


def test_render_clip_is_deterministic_and_seeded_by_the_content_key() -> None:
    """Same job, same bytes (the dither seed comes from the content key); another seed gives
    other bytes."""
    j = job(clip())
    a, b = render_clip(j), render_clip(j)
    assert np.array_equal(a.outputs[0].pcm, b.outputs[0].pcm)
    other = render_clip(replace(j, seed=12345))
    assert not np.array_equal(a.outputs[0].pcm, other.outputs[0].pcm)


def test_render_clip_runs_in_a_worker_process() -> None:
    """The stage is a plain function of a picklable job: a spawned worker process (which
    shares nothing with this one) returns the same samples as rendering here."""
    j = job(clip(), rates=(24000,))
    here = render_clip(j)
    with ProcessPoolExecutor(max_workers=1,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        there: Any = pool.submit(render_clip, j).result(timeout=120)
    assert there.content_key == here.content_key and there.choice == here.choice
    assert np.array_equal(there.outputs[0].pcm, here.outputs[0].pcm)
