"""LiveKit integration (greetkit/agents.py) against real livekit-agents objects.

Every session here is a real ``AgentSession`` started without a room; its audio output is
:class:`CaptureOutput`, a real ``io.AudioOutput`` that keeps every frame it is given and
reports playback finished when the session flushes, as a room output does when its buffer
drains. The live-TTS path runs through :class:`greetkit.agents.EspeakTTS` (espeak-ng).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pytest
from bank import clip_entry, clip_file, edit_manifest
from livekit import rtc
from livekit.agents import Agent, AgentSession, APIError
from livekit.agents.job import JobExecutorType, JobProcess
from livekit.agents.llm import ChatMessage
from livekit.agents.utils.audio import audio_frames_from_file
from livekit_capture import CaptureOutput, started_session

from greetkit.agents import EspeakTTS, frames, output_rate
from greetkit.errors import AudioError, StoreError
from greetkit.live import LeveledTTS
from greetkit.loader import Bank, load

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@asynccontextmanager
async def session_with_capture(rate: int | None, tts_rate: int = 48000, *,
                               realtime: bool = False,
                               ) -> AsyncIterator[tuple[AgentSession[Any], CaptureOutput]]:
    """A started AgentSession (no room, no LLM/STT) whose audio goes to a CaptureOutput."""
    out = CaptureOutput(rate, realtime=realtime)
    async with started_session(EspeakTTS(sample_rate=tts_rate), out) as session:
        yield session, out


def assistant_texts(session: AgentSession[Any]) -> list[str]:
    return [item.text_content or "" for item in session.history.items
            if isinstance(item, ChatMessage) and item.role == "assistant"]


@pytest.fixture
def greetkit_log(caplog: pytest.LogCaptureFixture) -> Callable[[int], list[str]]:
    """Messages the greetkit logger emitted at ``level`` or above (clear with caplog)."""
    caplog.set_level(logging.INFO, logger="greetkit")

    def read(level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "greetkit" and r.levelno >= level]

    return read


# -- frames ------------------------------------------------------------------------------------

async def collect(it: AsyncIterator[rtc.AudioFrame]) -> list[rtc.AudioFrame]:
    return [f async for f in it]


def test_frames_are_sample_exact_48k_mono_20ms(built_store: Path) -> None:
    """Frames are 48 kHz mono 960-sample frames, the last holding the remainder; their
    concatenation equals the clip's PCM from first to last sample."""
    bank = load(built_store)
    clip = bank["en_default"]
    got = run(collect(frames(clip)))
    assert {(f.sample_rate, f.num_channels) for f in got} == {(48000, 1)}
    sizes = [f.samples_per_channel for f in got]
    assert all(s == 960 for s in sizes[:-1]) and 0 < sizes[-1] <= 960
    pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in got])
    assert np.array_equal(pcm, clip.samples)


def test_frames_of_the_24k_variant_and_other_frame_lengths(built_store: Path) -> None:
    """sample_rate=24000 plays the stored variant exactly; frame_ms sets the frame length."""
    bank = load(built_store)
    clip = bank["zh_default"]
    got = run(collect(bank.frames("zh_default", sample_rate=24000, frame_ms=10)))
    assert {f.sample_rate for f in got} == {24000}
    assert got[0].samples_per_channel == 240
    pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in got])
    assert np.array_equal(pcm, clip.pcm(24000))


def test_frames_at_a_rate_without_variant_is_a_clear_error(built_store: Path) -> None:
    """Asking for a rate the bank did not build names the rates it has and the fix."""
    with pytest.raises(AudioError, match=r"16000 Hz variant.*48000, 24000.*sample_rates"):
        load(built_store).frames("en_default", sample_rate=16000)


def test_frames_refuses_a_clip_failing_its_checksum(store: Path) -> None:
    """Bank.frames checks the checksum first and raises StoreError for a corrupt file."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    path = store / clip_file(data, "en_bye")["file"]
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="checksum"):
        load(store).frames("en_bye")


def test_each_frames_call_is_independent_and_concurrent_safe(built_store: Path) -> None:
    """Twenty concurrent consumers of the same clips each get the exact PCM."""
    bank = load(built_store)
    keys = [k for k in bank] * 5

    async def main() -> list[list[rtc.AudioFrame]]:
        return await asyncio.gather(*(collect(bank.frames(k)) for k in keys))

    for key, got in zip(keys, run(main()), strict=True):
        pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in got])
        assert np.array_equal(pcm, bank[key].samples)


def test_no_audio_frame_object_is_shared_between_plays(built_store: Path) -> None:
    """Consecutive and concurrent plays each get their own AudioFrame objects (the first
    frame is cut ahead of time for the next play, and handed to one play only), all exact."""
    bank = load(built_store)

    async def main() -> list[list[rtc.AudioFrame]]:
        runs = [await collect(bank.frames("en_bye")) for _ in range(3)]
        runs += await asyncio.gather(*(collect(bank.frames("en_bye")) for _ in range(4)))
        return runs

    runs = run(main())
    ids = [id(f) for frames_ in runs for f in frames_]
    assert len(ids) == len(set(ids))
    for got in runs:
        pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in got])
        assert np.array_equal(pcm, bank["en_bye"].samples)


def test_interrupting_a_greeting_stops_it_cleanly(built_store: Path) -> None:
    """handle.interrupt() while a clip plays (real-time output): the handle completes as
    interrupted, the output was cleared once, and what it got is an exact prefix of the clip."""
    bank = load(built_store)

    async def main() -> None:
        async with session_with_capture(48000, realtime=True) as (session, out):
            handle = bank.say(session, "default", language="en")
            assert handle is not None
            while not out.segments:
                await asyncio.sleep(0.001)
            handle.interrupt()
            await asyncio.wait_for(handle.wait_for_playout(), 10)
            assert handle.done() and handle.interrupted and out.interrupted == 1
            captured = out.pcm()
            assert 0 < len(captured) <= len(bank["en_default"].samples)
            assert np.array_equal(captured, bank["en_default"].samples[:len(captured)])

    run(main())


def test_frames_lose_no_sample_of_the_stored_wav(built_store: Path) -> None:
    """greetkit's frames are the stored clip exactly. Beside it, livekit's
    utils.audio.audio_frames_from_file on the same WAV is measured and printed (it dropped
    4096 samples = 85 ms in livekit-agents 1.8.9): information for the README, not a verdict
    on livekit, so this test does not break the day livekit fixes it."""
    bank = load(built_store)
    clip = bank["en_default"]
    theirs = np.concatenate([
        np.frombuffer(f.data, dtype=np.int16)
        for f in run(collect(audio_frames_from_file(str(built_store / clip.entry.base.file))))])
    ours = np.concatenate([np.frombuffer(f.data, dtype=np.int16)
                           for f in run(collect(frames(clip)))])
    lost = len(ours) - len(theirs)
    assert np.array_equal(ours, clip.samples)  # greetkit: nothing lost
    # what livekit delivered is the clip's tail (its loss is at the head only)
    assert lost >= 0 and np.array_equal(theirs, clip.samples[lost:])
    print(f"livekit-agents {version('livekit-agents')} audio_frames_from_file dropped "
          f"{lost} leading samples ({lost / clip.sample_rate * 1000:.1f} ms)")


# -- say through a real AgentSession -----------------------------------------------------------

@pytest.mark.parametrize("rate", [48000, 24000])
def test_say_delivers_the_clip_sample_exact_at_the_output_rate(
        built_store: Path, rate: int, greetkit_log: Callable[[int], list[str]]) -> None:
    """bank.say into a real session: the output captures the clip's PCM byte for byte at
    the output's rate (48 kHz clip or 24 kHz variant, no resampling), the SpeechHandle
    completes, the transcript is the clip's text, and no warning is logged."""
    bank = load(built_store)

    async def main() -> None:
        async with session_with_capture(rate) as (session, out):
            assert output_rate(session) == rate
            handle = bank.say(session, "default", language="zh-CN")
            assert handle is not None
            await asyncio.wait_for(handle.wait_for_playout(), 10)
            assert handle.done() and not handle.interrupted
            assert len(out.segments) == 1 and out.rates() == {rate}
            assert out.pcm().tobytes() == bank["zh_default"].pcm(rate).tobytes()
            assert assistant_texts(session) == ["你好！我是小智！"]

    run(main())
    assert greetkit_log(logging.WARNING) == []
    info = greetkit_log(logging.INFO)
    assert any("'zh_default' source=clip" in m and "first frame" in m for m in info), info


def test_unknown_phrase_plays_the_fallback_clip_with_one_warning(
        built_store: Path, greetkit_log: Callable[[int], list[str]]) -> None:
    """A phrase the bank does not know plays the pre-built fallback clip (not live TTS),
    sample-exact, with one warning naming the phrase."""
    bank = load(built_store)

    async def main() -> None:
        async with session_with_capture(48000) as (session, out):
            handle = bank.say(session, "weather", language="zh")
            assert handle is not None
            await asyncio.wait_for(handle.wait_for_playout(), 10)
            assert np.array_equal(out.pcm(), bank["fallback"].samples)
            assert assistant_texts(session) == ["Hello! Give me just a moment."]

    run(main())
    warnings = greetkit_log(logging.WARNING)
    assert len(warnings) == 1 and "'weather'" in warnings[0], warnings


def test_say_without_a_matching_variant_plays_48k(built_store: Path) -> None:
    """An output rate the bank has no variant for gets the 48 kHz clip (LiveKit resamples)."""
    bank = load(built_store)

    async def main() -> None:
        async with session_with_capture(16000, tts_rate=16000) as (session, out):
            handle = bank.say(session, "bye", language="en")
            assert handle is not None
            await asyncio.wait_for(handle.wait_for_playout(), 10)
            assert out.rates() == {16000}  # resampled by LiveKit from the 48 kHz frames
            expected = len(bank["en_bye"].samples) / 3
            assert abs(len(out.pcm()) - expected) < 0.02 * expected

    run(main())


def test_queued_and_concurrent_says_deliver_correct_audio(built_store: Path) -> None:
    """Six sessions greeting at once, each queueing three clips: every segment equals its
    clip exactly, in order."""
    bank = load(built_store)
    plan = [("default", "en", "en_default"), ("bye", "en", "en_bye"),
            ("default", "zh", "zh_default")]

    async def one() -> CaptureOutput:
        async with session_with_capture(48000) as (session, out):
            handles = [bank.say(session, p, language=lang) for p, lang, _ in plan]
            await asyncio.wait_for(
                asyncio.gather(*(h.wait_for_playout() for h in handles if h)), 20)
            return out

    async def main() -> list[CaptureOutput]:
        return await asyncio.gather(*(one() for _ in range(6)))

    for out in run(main()):
        assert len(out.segments) == len(plan)
        for i, (_, _, key) in enumerate(plan):
            assert np.array_equal(out.pcm(i), bank[key].samples)


def test_example_agent_prewarm_and_greeting(built_store: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/agent.py: its prewarm puts the preloaded bank ($GREETKIT_BANK) into a real
    JobProcess's userdata, its session (bank.live_tts(): the espeak bank's EspeakTTS at
    48 kHz, leveled) plays the caller-language clip sample-exact."""
    monkeypatch.setenv("GREETKIT_BANK", str(built_store))
    monkeypatch.delitem(sys.modules, "greetkit.preload", raising=False)
    monkeypatch.delenv("LIVEKIT_TTS_MODEL", raising=False)
    example = _import_example()
    proc = JobProcess(executor_type=JobExecutorType.PROCESS, user_arguments=None,
                      http_proxy=None)
    example.prewarm(proc)
    bank = proc.userdata["greetings"]
    assert isinstance(bank, Bank) and "zh_default" in bank
    assert example.ROOM_OPTIONS.get_audio_output_options().sample_rate == 48000

    async def main() -> None:
        session = example.make_session(proc.userdata)
        assert isinstance(session.tts, LeveledTTS)
        assert isinstance(session.tts.inner, EspeakTTS) and session.tts.sample_rate == 48000
        out = CaptureOutput(example.OUTPUT_RATE)
        session.output.audio = out
        await session.start(agent=Agent(instructions="Greet."), record=False)
        try:
            handle = example.greet(session, proc.userdata, "zh-CN")
            assert handle is not None
            await asyncio.wait_for(handle.wait_for_playout(), 10)
            assert np.array_equal(out.pcm(), bank["zh_default"].samples)
        finally:
            await session.aclose()

    run(main())


def test_example_greets_from_the_clip_in_livekits_agent_server_offline(
        built_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """LiveKit's real AgentServer, unregistered (no LiveKit server), runs a fake job in a real
    forkserver job process with the example's preload_modules and prewarm: the zh-CN caller
    hears the zh_default clip sample-exact, from the bank the forkserver preloaded."""
    out = tmp_path / "job.json"
    monkeypatch.setenv("GREETKIT_BANK", str(built_store))
    monkeypatch.setenv("GREETKIT_TEST_JOB_OUT", str(out))
    monkeypatch.delenv("LIVEKIT_TTS_MODEL", raising=False)
    monkeypatch.delenv("GREETKIT_DISABLE", raising=False)
    for name in ("greetkit.preload", "greetkit_example_agent", "agent_job"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import agent_job

    async def main() -> None:
        server = agent_job.server
        running = asyncio.create_task(server.run(devmode=True, unregistered=True))
        await asyncio.sleep(0)  # run() takes the server's lock first; simulate_job waits on it
        try:
            await server.simulate_job("greetkit-test", fake_job=True)
            for _ in range(1200):  # the job writes its outcome; at most 60 s
                if out.exists() or running.done():
                    break
                await asyncio.sleep(0.05)
        finally:
            await asyncio.wait_for(server.aclose(), 30)
            await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO):
        run(main())
    result = json.loads(out.read_text(encoding="utf-8"))
    assert "error" not in result, result
    assert result["pid"] != os.getpid()
    assert result["preloaded"] is True and result["same_bank"] is True
    assert result["equals_clip"] is True
    assert result["samples"] == load(built_store)["zh_default"].pcm(48000).size
    assert any("say 'zh_default' source=clip rate=48000 first frame" in r.getMessage()
               for r in caplog.records)  # the job process's log line, forwarded by LiveKit


def _import_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("greetkit_example_agent",
                                                  REPO / "examples" / "agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- fallback to live TTS ----------------------------------------------------------------------

def _break_file(root: Path, key: str, how: str, rates: tuple[int, ...] = (48000,)) -> None:
    data = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    entry = clip_entry(data, key)
    files = {int(rate): f["file"] for rate, f in entry["files"].items()}
    for rate in rates:
        path = root / files[rate]
        if how == "missing":
            path.unlink()
        else:  # same size, different bytes: only the checksum can tell
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0x40
            path.write_bytes(bytes(raw))


FALLBACK_TEXT = "Welcome, one moment please."


def _corrupt_manifest(root: Path) -> None:
    (root / "manifest.json").write_bytes(b"\x00not json")


def _empty_store(root: Path) -> None:
    (root / "manifest.json").unlink()


@pytest.mark.parametrize(("case", "damage", "phrase", "language", "spoken"), [
    ("no clip for the phrase", None, "thanks", "en-US", "Thank you for calling."),
    ("missing file", lambda r: _break_file(r, "en_default", "missing"), "default", "en",
     "Hi! I'm Xiaozhi!"),
    ("checksum mismatch", lambda r: _break_file(r, "zh_default", "corrupt", (48000, 24000)),
     "default", "zh", "你好！我是小智！"),
    ("empty store", _empty_store, "default", "en", FALLBACK_TEXT),
    ("corrupt manifest", _corrupt_manifest, "default", "en", FALLBACK_TEXT),
    ("future format", lambda r: edit_manifest(r, lambda d: d.update(format=99)), "default",
     "en", "Hi! I'm Xiaozhi!"),
])
def test_each_failure_falls_back_to_live_tts(
        store: Path, greetkit_log: Callable[[int], list[str]],
        caplog: pytest.LogCaptureFixture, case: str, damage: Callable[[Path], None] | None,
        phrase: str, language: str, spoken: str) -> None:
    """Every failure mode ends in session.say(text) through EspeakTTS: audio is played,
    the transcript is the manifest's text, nothing is raised, one warning per say."""
    if damage:
        damage(store)
    bank = load(store)
    caplog.clear()  # load's own warning (one per broken clip) is tested in test_loader

    async def main() -> None:
        async with session_with_capture(48000) as (session, out):
            handle = bank.say(session, phrase, language=language, fallback_text=FALLBACK_TEXT)
            assert handle is not None, case
            await asyncio.wait_for(handle.wait_for_playout(), 20)
            assert handle.done()
            assert assistant_texts(session) == [spoken]
            assert len(out.segments) >= 1 and out.rates() == {48000}
            assert len(out.pcm()) > 0.3 * 48000  # real speech, not a click
            assert np.abs(out.pcm()).max() > 1000

    run(main())
    # One line for the say (a corrupt file also logs its own warning when first hashed).
    says = [w for w in greetkit_log(logging.WARNING) if "source=" in w]
    assert len(says) == 1 and "source=live" in says[0], says


def test_no_text_anywhere_says_nothing_and_warns_once(tmp_path: Path,
                                                     greetkit_log: Callable[[int], list[str]],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """An empty store and no fallback_text: say returns None, one warning, no exception."""
    bank = load(tmp_path)
    caplog.clear()

    async def main() -> None:
        async with session_with_capture(48000) as (session, out):
            assert bank.say(session, "default", language="en") is None
            assert out.segments == []

    run(main())
    assert len(greetkit_log(logging.WARNING)) == 1


def test_say_on_a_closed_session_never_raises(built_store: Path,
                                              greetkit_log: Callable[[int], list[str]]) -> None:
    """session.say raising (session not running) is caught: None and one warning."""
    bank = load(built_store)

    async def main() -> None:
        session: AgentSession[Any] = AgentSession(tts=EspeakTTS())
        assert bank.say(session, "default", language="en") is None

    run(main())
    warnings = greetkit_log(logging.WARNING)
    assert len(warnings) == 1 and "en_default" in warnings[0]


# -- EspeakTTS ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [24000, 48000])
def test_espeak_tts_synthesizes_at_its_rate(rate: int) -> None:
    """EspeakTTS is a non-streaming livekit TTS producing mono speech at its sample rate."""
    async def main() -> rtc.AudioFrame:
        tts = EspeakTTS(sample_rate=rate)
        assert not tts.capabilities.streaming and tts.sample_rate == rate
        return await tts.synthesize("Hello, this is a test.").collect()

    frame = run(main())
    assert (frame.sample_rate, frame.num_channels) == (rate, 1)
    pcm = np.frombuffer(frame.data, dtype=np.int16)
    assert frame.duration > 0.8 and np.abs(pcm).max() > 1000


def test_espeak_tts_speaks_chinese_with_a_chinese_voice() -> None:
    """Han text is rendered by the cmn voice even when the TTS is set to English (en-us
    would read it as 'Chinese letter ...', twice as long): same length as a cmn TTS."""
    from greetkit.engines import get_engine
    from greetkit.engines.base import RenderRequest

    async def main() -> tuple[float, float, float]:
        english = await EspeakTTS(language="en").synthesize("你好").collect()
        chinese = await EspeakTTS(voice="cmn").synthesize("你好").collect()
        spelled = await get_engine("espeak").render(
            RenderRequest(key="k", text="你好", language="en", voice="en-us"))
        return english.duration, chinese.duration, spelled.duration

    english, chinese, spelled = run(main())
    assert english == pytest.approx(chinese, rel=0.01)
    assert spelled > 1.5 * chinese


def test_espeak_tts_reports_an_unknown_voice_as_api_error() -> None:
    """An espeak failure surfaces as livekit's APIError (non-retryable), not a crash."""
    async def main() -> None:
        tts = EspeakTTS(voice="no-such-voice")
        await tts.synthesize("hello").collect()

    with pytest.raises(APIError, match="no-such-voice"):
        run(main())


# -- issue 11: never silent, language before variants, per-file health, kill switch ------------

async def _say_and_wait(bank: Bank, rate: int, phrase: str, language: Any,
                        **kwargs: Any) -> tuple[list[str], CaptureOutput]:
    """bank.say into a fresh real session at ``rate``; the transcript and the output."""
    async with session_with_capture(rate) as (session, out):
        handle = bank.say(session, phrase, language=language, **kwargs)
        assert handle is not None
        await asyncio.wait_for(handle.wait_for_playout(), 20)
        assert handle.done() and not handle.interrupted
        return assistant_texts(session), out


def _write_spec(directory: Path) -> Path:
    from bank import BUILD_SPEC

    path = directory / "voices.yaml"
    path.write_text(BUILD_SPEC, encoding="utf-8")
    return path


@pytest.mark.parametrize("damage", ["missing dir", "invalid JSON manifest"])
def test_unloadable_store_speaks_the_text_of_voices_yaml_beside_it(
        tmp_path: Path, store: Path, damage: str,
        greetkit_log: Callable[[int], list[str]]) -> None:
    """No fallback_text given: a missing store or a corrupt manifest still speaks the
    phrase's words live, read from the voices.yaml beside the store."""
    _write_spec(store.parent)
    if damage == "missing dir":
        shutil.rmtree(store)
    else:
        _corrupt_manifest(store)
    bank = load(store)
    errors = greetkit_log(logging.ERROR)
    assert len(errors) == 1 and str(store.resolve()) in errors[0] and "voices.yaml" in errors[0]
    texts, out = run(_say_and_wait(bank, 48000, "default", "zh"))
    assert texts == ["你好！我是小智！"]
    assert len(out.pcm()) > 0.3 * 48000 and np.abs(out.pcm()).max() > 1000


def test_spec_named_at_load_gives_the_live_texts(tmp_path: Path) -> None:
    """load(path, spec=...) reads the texts from that voices.yaml when the store is missing."""
    (tmp_path / "elsewhere").mkdir()
    spec = _write_spec(tmp_path / "elsewhere")
    bank = load(tmp_path / "no" / "store", spec=spec)
    texts, _ = run(_say_and_wait(bank, 48000, "bye", "en"))
    assert texts == ["Goodbye for now."]


def test_one_bad_24k_file_leaves_48k_sessions_on_the_clip(
        store: Path, greetkit_log: Callable[[int], list[str]]) -> None:
    """Corrupt only en_default's 24 kHz file: a 24 kHz session plays the healthy 48 kHz file
    (the session resamples), and a 48 kHz session afterwards still gets the clip byte for
    byte, never live TTS."""
    _break_file(store, "en_default", "corrupt", (24000,))
    bank = load(store)
    texts24, out24 = run(_say_and_wait(bank, 24000, "default", "en"))
    texts48, out48 = run(_say_and_wait(bank, 48000, "default", "en"))
    assert texts24 == texts48 == ["Hi! I'm Xiaozhi!"]
    assert out24.rates() == {24000}  # the 48 kHz clip, resampled by the session
    assert abs(len(out24.pcm()) - bank["en_default"].duration * 24000) < 0.01 * 24000
    assert out48.pcm().tobytes() == bank["en_default"].pcm(48000).tobytes()
    logs = greetkit_log(logging.INFO)
    assert not any("source=live" in m for m in logs), logs
    assert sum("source=clip" in m for m in logs) == 2


def test_variables_never_reach_session_say(built_store: Path,
                                           greetkit_log: Callable[[int], list[str]]) -> None:
    """bank.say(..., time_of_day="morning") selects with the variable and plays the clip;
    session.say never receives it (it would raise TypeError)."""
    bank = load(built_store)
    texts, out = run(_say_and_wait(bank, 48000, "default", "en", time_of_day="morning",
                                   allow_interruptions=True))
    assert texts == ["Hi! I'm Xiaozhi!"]
    assert out.pcm().tobytes() == bank["en_default"].pcm(48000).tobytes()
    assert greetkit_log(logging.WARNING) == []


def test_chinese_caller_hears_chinese_when_a_variant_exists_only_in_english(
        store: Path) -> None:
    """default_morning exists only in English: a zh caller with time_of_day=morning gets
    the zh_default clip, an en caller the English variant."""
    def add(data: dict[str, Any]) -> None:
        data["clips"].append(dict(clip_entry(data, "en_bye"), key="en_default_morning",
                                  phrase="default_morning"))

    edit_manifest(store, add)
    bank = load(store)
    texts, out = run(_say_and_wait(bank, 48000, "default", "zh", time_of_day="morning"))
    assert texts == ["你好！我是小智！"]
    assert out.pcm().tobytes() == bank["zh_default"].pcm(48000).tobytes()
    _, en = run(_say_and_wait(bank, 48000, "default", "en", time_of_day="morning"))
    assert en.pcm().tobytes() == bank["en_default_morning"].pcm(48000).tobytes()


@pytest.mark.parametrize("language", [123, None, ["zh"]])
def test_non_string_language_plays_the_default_clip(built_store: Path, language: Any) -> None:
    """language=123 (or any non-string) is unknown: the default language's clip plays."""
    bank = load(built_store)
    texts, out = run(_say_and_wait(bank, 48000, "default", language))
    assert texts == ["Hi! I'm Xiaozhi!"]
    assert out.pcm().tobytes() == bank["en_default"].pcm(48000).tobytes()


def test_kill_switch_speaks_every_greeting_live(
        built_store: Path, monkeypatch: pytest.MonkeyPatch,
        greetkit_log: Callable[[int], list[str]]) -> None:
    """GREETKIT_DISABLE=1: say speaks the clip's text with live TTS (espeak audio, not the
    clip's samples), and the switch is logged once for the process."""
    import greetkit.loader

    monkeypatch.setattr(greetkit.loader, "_disabled_logged", False)
    monkeypatch.setenv("GREETKIT_DISABLE", "1")
    bank = load(built_store)
    for _ in range(2):
        texts, out = run(_say_and_wait(bank, 48000, "default", "zh"))
        assert texts == ["你好！我是小智！"]
        assert out.pcm().tobytes() != bank["zh_default"].pcm(48000).tobytes()
        assert len(out.pcm()) > 0.3 * 48000
    logs = greetkit_log(logging.WARNING)
    assert sum("GREETKIT_DISABLE" in m and "every greeting" in m for m in logs) == 1
    assert sum("source=live" in m for m in logs) == 2
