"""The edge engine, driven through the real edge_tts client against a local server.

The server (tests/edge_server.py) speaks edge-tts's wire protocol with real espeak-ng
speech encoded as MP3 by libsndfile; each test scripts how it misbehaves.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from edge_server import EdgeServer, Step, encode_mp3, serving

from greetkit.engines.base import RenderRequest
from greetkit.engines.edge import (
    DECODER_DELAY_SAMPLES,
    MAX_REQUEST_BYTES,
    VOICE_CACHE,
    EdgeEngine,
    EdgeOptions,
    TruncatedStream,
    decode_checked,
    refresh_voice_cache,
    split_text,
    voice_problem,
)
from greetkit.errors import EngineError, EngineUnavailable

edge_tts = pytest.importorskip("edge_tts")
from edge_tts.drm import DRM  # noqa: E402


@pytest.fixture(scope="module")
def shared_server() -> Iterator[EdgeServer]:
    with EdgeServer() as server:
        yield server


@pytest.fixture
def server(shared_server: EdgeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[EdgeServer]:
    """The module's server, reset, with the engine pointed at it and a clean client clock."""
    shared_server.reset()
    shared_server.max_connections = None
    shared_server.clock_offset = 0.0
    shared_server.default = Step.ok()
    monkeypatch.setenv("GREETKIT_EDGE_URL", shared_server.url)
    DRM.clock_skew_seconds = 0.0
    yield shared_server
    DRM.clock_skew_seconds = 0.0


def fast_engine(**options: float) -> EdgeEngine:
    """An engine whose retries wait milliseconds, not seconds."""
    settings: dict[str, float] = {"backoff": 0.002, "max_backoff": 0.01, "attempts": 4,
                                  "deadline": 20.0, "breaker": 0}
    settings.update(options)
    return EdgeEngine(**settings)  # type: ignore[arg-type]


def request(text: str = "Hi! I'm Xiaozhi!", *, voice: str = "en-US-AvaNeural",
            language: str = "en", key: str = "en_default", **options: str) -> RenderRequest:
    return RenderRequest(key=key, text=text, language=language, voice=voice, options=options)


def render(engine: EdgeEngine, req: RenderRequest) -> object:
    return asyncio.run(engine.render(req))


def espeak_seconds(text: str, voice: str, rate: int = 24000) -> float:
    """Duration of the espeak speech the server renders for ``text`` (sentence by sentence)."""
    import re

    import soxr

    from greetkit.engines.espeak import EspeakEngine

    total = 0
    for sentence in filter(None, (s.strip() for s in re.split(r"(?<=[。！？；.!?;])", text))):
        audio = asyncio.run(EspeakEngine().render(RenderRequest(
            key="x", text=sentence, language="en", voice=voice)))
        total += soxr.resample(audio.samples, audio.sample_rate, rate).shape[0]
    return total / rate


# -- normal renders ------------------------------------------------------------------------


def test_render_returns_the_decoded_mp3_the_server_sent(server: EdgeServer) -> None:
    """The engine's samples are exactly the server's MP3 decoded; rate comes from the file."""
    audio = asyncio.run(fast_engine().render(request()))
    sent = server.handshakes[-1].audio
    decoded, rate = sf.read(io.BytesIO(sent), dtype="float32")
    assert audio.sample_rate == rate == 24000
    np.testing.assert_array_equal(audio.samples, decoded)
    assert audio.info["bytes"] == len(sent)
    assert audio.info["retries"] == 0


def test_render_duration_matches_espeak_source(server: EdgeServer) -> None:
    """Decoded length = espeak's speech + the decoder's 1105-sample priming (+ < 2 MP3 frames)."""
    text = "Hi! I'm Xiaozhi! How are you today?"
    audio = asyncio.run(fast_engine().render(request(text)))
    expected = espeak_seconds(text, "en-us") + DECODER_DELAY_SAMPLES / 24000
    assert 0 <= audio.duration - expected < 2 * 576 / 24000


def test_sample_rate_is_read_not_assumed(shared_server: EdgeServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16 kHz stream comes back as 16 kHz audio (nothing hard-codes 24 kHz)."""
    with EdgeServer(sample_rate=16000) as slow_rate:
        monkeypatch.setenv("GREETKIT_EDGE_URL", slow_rate.url)
        audio = asyncio.run(fast_engine().render(request("Hello.")))
    assert audio.sample_rate == 16000
    assert sf.info(io.BytesIO(slow_rate.handshakes[-1].audio)).samplerate == 16000


def test_boundaries_are_reported_and_cover_the_text(server: EdgeServer) -> None:
    """Sentence boundaries (100 ns ticks) come back in info and end inside the audio."""
    audio = asyncio.run(fast_engine().render(request("Hello there. How are you?")))
    texts = [b["text"] for b in audio.info["boundaries"]]
    assert texts == ["Hello there.", "How are you?"]
    end = max(b["offset"] + b["duration"] for b in audio.info["boundaries"]) / 1e7
    assert end < audio.duration


def test_prosody_options_reach_the_service(server: EdgeServer) -> None:
    """rate / pitch / volume from voices.yaml go into the SSML the service receives."""
    asyncio.run(fast_engine().render(request("Hello.", rate="+10%", pitch="+5Hz",
                                             volume="-20%")))
    ssml = server.ssml[-1]
    assert "rate='+10%'" in ssml and "pitch='+5Hz'" in ssml and "volume='-20%'" in ssml
    assert "(en-US, AvaNeural)" in ssml


def test_bad_prosody_is_a_non_retryable_error(server: EdgeServer) -> None:
    """A rate edge-tts cannot express fails at once, without contacting the service."""
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine().render(request("Hello.", rate="fast")))
    assert not info.value.retryable
    assert server.requests == []


# -- failure modes -------------------------------------------------------------------------


def test_403_with_date_corrects_the_clock_then_succeeds(server: EdgeServer) -> None:
    """Server clock an hour ahead: 403 + Date, the client fixes its skew, the retry works."""
    server.clock_offset = 3600.0
    audio = asyncio.run(fast_engine().render(request()))
    assert [r.status for r in server.handshakes] == [403, 101]
    assert audio.info["retries"] == 0  # edge-tts's own retry, not greetkit's
    assert abs(DRM.clock_skew_seconds - 3600.0) < 2.0


def test_403_twice_fails_without_retrying(server: EdgeServer) -> None:
    """Two 403s mean the token is refused: not retryable, and the message says to upgrade."""
    server.script(Step.http(403), Step.http(403))
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine().render(request()))
    assert not info.value.retryable
    assert "403" in str(info.value) and "upgrade" in str(info.value)
    assert len(server.handshakes) == 2


def test_429_then_ok_is_retried(server: EdgeServer) -> None:
    """A rate limit is retried after a backoff and the clip succeeds."""
    server.script(Step.http(429))
    audio = asyncio.run(fast_engine().render(request()))
    assert [r.status for r in server.handshakes] == [429, 101]
    assert audio.info["retries"] == 1


def test_503_repeatedly_exhausts_retries(server: EdgeServer) -> None:
    """503 on every attempt: exactly `attempts` handshakes, then a retryable EngineError."""
    server.default = Step.http(503)
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine(attempts=3).render(request()))
    assert info.value.retryable
    assert "HTTP 503" in str(info.value) and "3 attempts" in str(info.value)
    assert [r.status for r in server.handshakes] == [503, 503, 503]


def test_deadline_bounds_all_attempts(server: EdgeServer) -> None:
    """An answer slower than the clip's whole deadline times out once; no attempt follows."""
    server.default = Step.ok(delay=2.0)
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine(deadline=0.5, attempts=10).render(request()))
    assert info.value.retryable and "timed out" in str(info.value)
    assert len(server.handshakes) == 1


def test_slow_answer_within_deadline_succeeds(server: EdgeServer) -> None:
    """A slow but complete answer is accepted."""
    server.script(Step.ok(delay=0.3))
    audio = asyncio.run(fast_engine().render(request()))
    assert audio.info["retries"] == 0 and audio.duration > 0.5


def test_close_mid_stream_is_detected_and_retried(server: EdgeServer) -> None:
    """Half the audio then a close (the client raises nothing): retried, full clip returned."""
    server.script(Step.close_mid_stream(0.5))
    audio = asyncio.run(fast_engine().render(request()))
    first, second = server.handshakes
    assert 0 < len(first.audio) < len(second.audio)
    assert audio.info["retries"] == 1
    decoded, _ = sf.read(io.BytesIO(second.audio), dtype="float32")
    np.testing.assert_array_equal(audio.samples, decoded)


@pytest.mark.parametrize("fraction", [0.3, 1.0])
def test_truncated_stream_is_never_accepted(server: EdgeServer, fraction: float) -> None:
    """Every attempt closes early (even after all audio, without turn.end): an error, no clip."""
    server.default = Step.close_mid_stream(fraction)
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine(attempts=2).render(request()))
    assert info.value.retryable
    assert "turn.end" in str(info.value)
    assert len(server.handshakes) == 2


def test_audio_shorter_than_boundaries_is_refused() -> None:
    """The duration check alone rejects an MP3 cut short of the service's metadata."""
    rate = 24000
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * rate) / rate).astype(np.float32)
    mp3 = encode_mp3(tone)
    boundaries = [{"offset": 0, "duration": 19_000_000}]  # speech until 1.9 s
    samples, sr = decode_checked(mp3, boundaries)  # the whole file passes
    assert sr == rate and samples.shape[0] >= 2 * rate
    with pytest.raises(TruncatedStream):
        decode_checked(mp3[: len(mp3) // 2], boundaries)


def test_no_audio_is_retried_then_fails(server: EdgeServer) -> None:
    """NoAudioReceived on every attempt: retried, then a retryable error naming it."""
    server.default = Step.no_audio()
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine(attempts=2).render(request()))
    assert info.value.retryable and "NoAudioReceived" in str(info.value)
    assert len(server.handshakes) == 2


def test_no_audio_once_then_ok(server: EdgeServer) -> None:
    """A single empty answer is retried and the clip succeeds."""
    server.script(Step.no_audio())
    audio = asyncio.run(fast_engine().render(request()))
    assert audio.info["retries"] == 1


def test_unknown_path_is_not_retried(server: EdgeServer) -> None:
    """A Path the client does not know is a protocol change: one attempt, non-retryable."""
    server.script(Step.unknown_path())
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine().render(request()))
    assert not info.value.retryable and "UnknownResponse" in str(info.value)
    assert len(server.handshakes) == 1


def test_unknown_voice_gets_no_audio(server: EdgeServer) -> None:
    """The service answers a voice it does not have with no audio, which becomes an error."""
    with pytest.raises(EngineError):
        asyncio.run(fast_engine(attempts=1).render(request(voice="en-US-NobodyNeural")))
    assert len(server.handshakes) == 1


def test_unspeakable_text_is_rejected_before_any_request(server: EdgeServer) -> None:
    """Punctuation-only text fails at once and the server sees nothing."""
    with pytest.raises(EngineError) as info:
        asyncio.run(fast_engine().render(request("！？…")))
    assert not info.value.retryable
    assert server.requests == []


def test_breaker_stops_trying_after_clips_in_a_row_fail(server: EdgeServer) -> None:
    """With breaker=2, the third clip of a failing build fails without a request."""
    server.default = Step.http(503)
    engine = fast_engine(attempts=2, breaker=2)

    async def three() -> list[BaseException | object]:
        out: list[BaseException | object] = []
        for i in range(3):
            try:
                out.append(await engine.render(request(key=f"k{i}")))
            except EngineError as exc:
                out.append(exc)
        return out

    results = asyncio.run(three())
    assert all(isinstance(r, EngineError) and r.retryable for r in results)
    assert len(server.handshakes) == 4  # 2 clips x 2 attempts, then none
    assert "not tried" in str(results[2])


# -- long text -----------------------------------------------------------------------------


def test_split_text_keeps_short_text_whole() -> None:
    """A greeting is one request, unchanged."""
    assert split_text("你好！我是小智！", 4000) == ["你好！我是小智！"]


def test_split_text_cuts_at_sentence_punctuation_within_the_limit() -> None:
    """Unbroken CJK text is cut after 。！？； and every piece fits the byte limit."""
    sentence = "今天天气很好我们一起去公园散步吧" * 3 + "。"
    text = sentence * 20
    pieces = split_text(text, 400)
    assert all(len(p.encode()) <= 400 for p in pieces)
    assert all(p.endswith("。") for p in pieces)
    assert "".join(pieces) == text


def test_split_text_cuts_a_sentence_with_no_boundaries_between_characters() -> None:
    """Without punctuation or spaces the last resort is a cut between characters."""
    text = "小" * 500
    pieces = split_text(text, 300)
    assert "".join(pieces) == text
    assert max(len(p.encode()) for p in pieces) <= 300


def test_long_cjk_text_goes_as_requests_under_4096_bytes(server: EdgeServer) -> None:
    """A 5 kB Chinese text with no spaces (a 3.9 kB part without any punctuation either) goes
    as several SSML documents, each within edge's 4096 bytes."""
    text = ("今天天气很好我们一起去公园散步吧" * 10 + "。") * 2 + "小" * 1300
    assert len(text.encode()) > MAX_REQUEST_BYTES
    # The server synthesizes ~70 s of speech for this text; on a loaded 2-core CI machine that
    # alone can pass the 20 s test deadline, which is not what this test is about.
    engine = fast_engine(deadline=300.0, attempt_timeout=120.0)
    audio = asyncio.run(engine.render(request(
        text, voice="zh-CN-XiaoxiaoNeural", language="zh", rate="+100%")))
    sizes = [len(s.encode()) for s in server.ssml]
    assert len(sizes) >= 3 and max(sizes) <= MAX_REQUEST_BYTES
    assert audio.info["requests"] == len(sizes)
    total = sum(sf.info(io.BytesIO(r.audio)).frames for r in server.handshakes)
    assert audio.samples.shape[0] == total
    # Boundaries of later requests are shifted onto the whole clip's timeline.
    offsets = [b["offset"] for b in audio.info["boundaries"]]
    assert offsets == sorted(offsets) and offsets[-1] / 1e7 < audio.duration


# -- concurrency ---------------------------------------------------------------------------


def test_forty_renders_never_open_a_fifth_connection(server: EdgeServer) -> None:
    """40 concurrent renders against a server allowing 4: never more than 4 at once."""
    server.max_connections = 4
    server.default = Step.ok(delay=0.05)
    engine = fast_engine(max_concurrency=4)

    async def forty() -> list[object]:
        return list(await asyncio.gather(*(engine.render(request(key=f"k{i}"))
                                           for i in range(40))))

    results = asyncio.run(forty())
    assert len(results) == 40
    assert server.max_concurrent == 4  # reached, never exceeded
    assert server.over_limit == 0
    assert len(server.handshakes) == 40


def test_server_counts_connections_over_its_limit(server: EdgeServer) -> None:
    """The check above can fail: an engine allowed 8 is seen opening more than 4."""
    server.max_connections = 4
    server.default = Step.ok(delay=0.05)
    engine = fast_engine(max_concurrency=8, attempts=1)

    async def burst() -> list[object]:
        return list(await asyncio.gather(*(engine.render(request(key=f"k{i}"))
                                           for i in range(16)), return_exceptions=True))

    results = asyncio.run(burst())
    assert server.max_concurrent > 4 and server.over_limit > 0
    refused = [r for r in results if isinstance(r, EngineError)]
    assert refused and all(r.retryable and "429" in str(r) for r in refused)


def test_concurrency_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """GREETKIT_EDGE_CONCURRENCY sets the bound when no option is given."""
    monkeypatch.setenv("GREETKIT_EDGE_CONCURRENCY", "2")
    assert EdgeEngine().concurrency() == 2
    assert EdgeEngine(max_concurrency=3).concurrency() == 3
    assert EdgeEngine(max_concurrency=3).max_concurrency == 3


def test_keyword_options_win_over_the_environment_which_wins_over_defaults() -> None:
    """EdgeOptions resolve per render: given > GREETKIT_EDGE_* > default, as a new copy."""
    options = EdgeOptions(attempts=3, breaker=0)
    env = {"GREETKIT_EDGE_ATTEMPTS": "7", "GREETKIT_EDGE_DEADLINE": "9.5",
           "GREETKIT_EDGE_CONCURRENCY": "2"}
    resolved = options.resolved(env)
    assert (resolved.attempts, resolved.deadline, resolved.max_concurrency) == (3, 9.5, 2)
    assert (resolved.backoff, resolved.max_backoff, resolved.breaker) == (0.5, 8.0, 0)
    assert resolved.retry.attempts == 3 and resolved.retry.deadline == 9.5
    assert options.resolved({}).deadline == 60.0  # the environment is read again each time


def test_a_non_numeric_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """GREETKIT_EDGE_ATTEMPTS=many is a configuration error naming it, not retryable."""
    monkeypatch.setenv("GREETKIT_EDGE_ATTEMPTS", "many")
    with pytest.raises(EngineUnavailable) as info:
        asyncio.run(EdgeEngine().render(request()))
    assert "GREETKIT_EDGE_ATTEMPTS='many' is not a number" in str(info.value)
    assert not info.value.retryable


# -- availability, version, extra ----------------------------------------------------------


def test_check_available_passes_when_the_server_listens(server: EdgeServer) -> None:
    """A listening endpoint is available (and nothing is rendered by the check)."""
    fast_engine().check_available()
    assert server.handshakes == []


def test_check_available_fails_fast_on_a_closed_port() -> None:
    """conftest points edge at 127.0.0.1:9: unavailable, retryable, named."""
    with pytest.raises(EngineUnavailable) as info:
        EdgeEngine().check_available()
    assert info.value.retryable and "127.0.0.1:9" in str(info.value)


def test_endpoint_without_query_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client appends '&ConnectionId=...', so an override without '?' is a config error."""
    monkeypatch.setenv("GREETKIT_EDGE_URL", "ws://127.0.0.1:1/edge/v1")
    with pytest.raises(EngineUnavailable) as info:
        EdgeEngine().check_available()
    assert not info.value.retryable and "'?'" in str(info.value)


def test_endpoint_change_resets_the_client_clock_skew(server: EdgeServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Skew learned from another server is dropped when the endpoint changes."""
    # Render once through another spelling of the endpoint, so the next render changes it
    # whatever earlier tests rendered against.
    monkeypatch.setenv("GREETKIT_EDGE_URL", server.url.replace("127.0.0.1", "localhost", 1))
    asyncio.run(fast_engine().render(request()))
    monkeypatch.setenv("GREETKIT_EDGE_URL", server.url)
    server.reset()
    DRM.clock_skew_seconds = 1234.0  # as if learned from the other server
    asyncio.run(fast_engine().render(request()))
    assert abs(DRM.clock_skew_seconds) < 2.0
    assert [r.status for r in server.handshakes] == [101]


def test_version_names_the_client_version() -> None:
    """The content key sees the edge-tts version, so an upgrade re-renders."""
    assert EdgeEngine().version() == f"edge-tts {edge_tts.__version__}"


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without edge_tts installed the engine is unavailable and says which extra to install."""
    monkeypatch.setitem(sys.modules, "edge_tts", None)
    with pytest.raises(EngineUnavailable) as info:
        EdgeEngine().version()
    assert "greetkit[edge]" in str(info.value) and not info.value.retryable


# -- voices --------------------------------------------------------------------------------


def test_validate_voice_suggests_the_closest_known_voice(tmp_path: Path) -> None:
    """A truncated name gets the full one as a suggestion."""
    assert voice_problem("zh-CN-Xiao", "zh", tmp_path) == (
        "unknown edge voice 'zh-CN-Xiao'; did you mean 'zh-CN-XiaoxiaoNeural'?")
    assert EdgeEngine().validate_voice("en-US-AvaNeural", "en", project_dir=tmp_path) is None
    assert voice_problem("en-us-avaneural", "en", tmp_path) == (
        "unknown edge voice 'en-us-avaneural'; did you mean 'en-US-AvaNeural'?")


def test_validate_voice_flags_a_voice_for_another_language(tmp_path: Path) -> None:
    """A Chinese voice for an English phrase is reported."""
    problem = voice_problem("zh-CN-XiaoxiaoNeural", "en", tmp_path)
    assert problem is not None and "speaks zh-CN" in problem


def test_refreshed_cache_is_used_for_validation(server: EdgeServer, tmp_path: Path) -> None:
    """--refresh caches the service's list; a voice only the service knows then validates."""
    with serving(voices=[("sw-KE-ZuriNeural", "sw-KE", "Female")]) as other:
        assert voice_problem("sw-KE-ZuriNeural", "sw", tmp_path) is not None
        path = refresh_voice_cache(tmp_path)
    assert path == tmp_path / VOICE_CACHE
    cached = json.loads(path.read_text(encoding="utf-8"))
    assert any(v["ShortName"] == "sw-KE-ZuriNeural" for v in cached["voices"])
    assert voice_problem("sw-KE-ZuriNeural", "sw", tmp_path) is None
    assert [r.kind for r in other.requests] == ["voices"]


def test_spec_warns_about_an_unknown_edge_voice(project: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """voices.yaml naming 'zh-CN-Xiao' loads, with a line-marked 'did you mean' warning."""
    from greetkit.spec import load_spec

    config = project / "voices.yaml"
    config.write_text(config.read_text("utf-8").replace("zh-CN-XiaoxiaoNeural", "zh-CN-Xiao"),
                      encoding="utf-8")
    monkeypatch.chdir(project)
    warnings = [str(w) for w in load_spec(config).warnings]
    assert len(warnings) == 1
    assert warnings[0].endswith("languages.zh.voices.edge: unknown edge voice 'zh-CN-Xiao'; "
                                "did you mean 'zh-CN-XiaoxiaoNeural'?")


def test_spec_checks_edge_voices_against_the_project_cache(project: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached list that lacks the spec's voice makes validation warn about it."""
    from greetkit.spec import load_spec

    cache = project / VOICE_CACHE
    cache.parent.mkdir()
    cache.write_text(json.dumps({"voices": [
        {"ShortName": "en-US-AvaNeural", "Locale": "en-US", "Gender": "Female"}]}), "utf-8")
    monkeypatch.chdir(project)
    warnings = [str(w) for w in load_spec(project / "voices.yaml").warnings]
    assert any("unknown edge voice 'zh-CN-XiaoxiaoNeural'" in w for w in warnings)
    assert not any("en-US-AvaNeural" in w for w in warnings)


def test_voices_command_lists_edge_and_espeak_voices(tmp_path: Path) -> None:
    """`greetkit voices` filters by language for both engines."""
    from click.testing import CliRunner

    from greetkit.commands.voices import command

    runner = CliRunner()
    edge = runner.invoke(command, ["-c", str(tmp_path / "voices.yaml"), "--language", "zh"])
    assert edge.exit_code == 0 and "zh-CN-XiaoxiaoNeural" in edge.output
    assert "en-US-AvaNeural" not in edge.output
    espeak = runner.invoke(command, ["--engine", "espeak", "--language", "cmn"])
    assert espeak.exit_code == 0 and "cmn" in espeak.output


def test_voices_refresh_unreachable_is_one_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable service gives one 'greetkit: ...' line and exit 1, no traceback."""
    from greetkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["voices", "-c", str(tmp_path / "voices.yaml"), "--refresh"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1
    assert len(err) == 1 and err[0].startswith("greetkit: cannot fetch the edge voice list")
    assert not (tmp_path / VOICE_CACHE).exists()


# -- end to end: greetkit build through the server -----------------------------------------


@pytest.fixture
def build_env(server: EdgeServer, monkeypatch: pytest.MonkeyPatch) -> EdgeServer:
    """The server plus retry settings that keep a failing build fast."""
    pytest.importorskip("greetkit.dsp")
    monkeypatch.setenv("GREETKIT_EDGE_BACKOFF", "0.002")
    monkeypatch.setenv("GREETKIT_EDGE_ATTEMPTS", "2")
    return server


def _served_audio(server: EdgeServer, text: str) -> bytes:
    """The MP3 the server sent for the request whose SSML carried ``text``."""
    from xml.sax.saxutils import escape

    hits = [r.audio for r in server.handshakes if r.ssml and escape(text) in r.ssml[0]]
    assert len(hits) == 1, f"{len(hits)} requests carried {text!r}"
    return hits[0]


def test_build_of_shipped_spec_renders_every_clip_with_edge(build_env: EdgeServer,
                                                            project: Path) -> None:
    """Every clip of the shipped voices.yaml is an edge clip made from the server's MP3."""
    from greetkit.build import build
    from greetkit.dsp import DspParams, process

    result = build(project / "voices.yaml")
    assert result.manifest is not None and not result.drafts and not result.failed
    assert len(build_env.handshakes) == len(result.manifest.clips) >= 4
    for clip in result.manifest.clips:
        assert (clip.engine, clip.draft) == ("edge", False), clip.key
        mp3 = _served_audio(build_env, clip.text)
        samples, rate = sf.read(io.BytesIO(mp3), dtype="float32")
        params = DspParams(target_lufs=clip.target_lufs,
                           true_peak_ceiling_db=clip.true_peak_ceiling_db, sample_rate=48000)
        expected = process(samples, rate, params, seed=int(clip.content_key[:8], 16)).pcm
        stored, stored_rate = sf.read(project / "greetings" / clip.base.file, dtype="int16")
        assert stored_rate == 48000
        np.testing.assert_array_equal(stored, np.asarray(expected).reshape(stored.shape))


@pytest.mark.parametrize(("failure", "cause"), [
    (Step.http(503), "HTTP 503"), (Step.http(429), "HTTP 429"),
    (Step.close_mid_stream(0.5), "turn.end"), (Step.no_audio(), "NoAudioReceived"),
], ids=["503", "429", "truncated", "no-audio"])
def test_failing_service_gives_flagged_espeak_drafts(build_env: EdgeServer, project: Path,
                                                     failure: Step, cause: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Failures after retries become espeak drafts with the cause in the summary; the next
    build that reaches a working service replaces them with edge clips."""
    from greetkit.cli import main

    build_env.default = failure
    assert main(["build", "-c", str(project / "voices.yaml")]) in (0, None)
    err = capsys.readouterr().err
    # 'draft: key, key: reason' lines: clips sharing a cause are listed on one line.
    drafted = {key: reason for line in err.splitlines() if line.startswith("draft: ")
               for keys, _, reason in [line[len("draft: "):].partition(": ")]
               for key in keys.split(", ")}
    manifest = json.loads((project / "greetings" / "manifest.json").read_text("utf-8"))
    for clip in manifest["clips"]:
        assert clip["draft"] is True and clip["engine"] == "espeak"
        assert cause in clip["draft_reason"]
        assert drafted[clip["key"]].startswith("edge failed: ") and cause in drafted[clip["key"]]
    build_env.default = Step.ok()
    assert main(["build", "-c", str(project / "voices.yaml")]) in (0, None)
    manifest = json.loads((project / "greetings" / "manifest.json").read_text("utf-8"))
    assert all(c["engine"] == "edge" and not c["draft"] for c in manifest["clips"])


def test_unreachable_service_drafts_without_a_request(build_env: EdgeServer, project: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed port is found once, up front: every clip is a draft naming the cause."""
    from greetkit.build import build

    monkeypatch.setenv("GREETKIT_EDGE_URL", "ws://127.0.0.1:9/edge/v1?TrustedClientToken=x")
    result = build(project / "voices.yaml")
    assert result.manifest is not None
    assert set(result.drafts) == {c.key for c in result.manifest.clips}
    assert all("cannot reach 127.0.0.1:9" in reason for reason in result.drafts.values())
    assert build_env.requests == []


@pytest.mark.slow
def test_forty_clip_build_never_opens_a_fifth_connection(build_env: EdgeServer,
                                                         tmp_path: Path) -> None:
    """`greetkit build` of 40 edge phrases against a 4-connection server: no draft, max 4."""
    from greetkit.build import build

    build_env.max_connections = 4
    build_env.default = Step.ok(delay=0.05)
    phrases = "".join(f"  p{i:02d}:\n    en: \"Hello number {i}.\"\n" for i in range(40))
    config = tmp_path / "voices.yaml"
    config.write_text("version: 1\ndefaults:\n  engine: edge\n  language: en\nlanguages:\n"
                      "  en:\n    voices:\n      edge: en-US-AvaNeural\n      espeak: en-us\n"
                      f"phrases:\n{phrases}", encoding="utf-8")
    result = build(config)
    assert result.manifest is not None and len(result.manifest.clips) == 40
    assert not result.drafts and not result.failed
    assert build_env.max_concurrent == 4 and build_env.over_limit == 0
