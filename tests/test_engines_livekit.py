"""The LiveKit plugin engine: the real livekit-plugins-openai against a loopback speech server.

The server (tests/openai_speech_server.py) answers OpenAI's ``/v1/audio/speech`` with real
espeak-ng audio and records each request, so these tests check what the plugin really sent and
what the build really stored.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_speech_server import SpeechServer, agent_spec, serving

pytest.importorskip("livekit.plugins.openai")

from greetkit.build import build
from greetkit.errors import SpecError
from greetkit.spec import load_spec

SPEC = """\
languages:
  en: {voices: {agent: alloy, espeak: en-us}}
  gb: {voices: {agent: echo, espeak: en-029}, engine: espeak}
phrases:
  default:
    en: "Hi! I'm Xiaozhi!"
    gb: "Hello from the espeak side."
  bye:
    en: "Goodbye for now."
"""


@pytest.fixture(scope="module")
def server() -> Iterator[SpeechServer]:
    with serving() as s:
        yield s


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin reads its key from the environment, as in an agent (never from voices.yaml)."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def write(tmp_path: Path, url: str, model: str = "gpt-4o-mini-tts") -> Path:
    path = tmp_path / "voices.yaml"
    path.write_text(agent_spec(SPEC, url, model=model), encoding="utf-8")
    return path


def manifest(out: Path) -> dict[str, dict[str, object]]:
    data = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return {c["key"]: c for c in data["clips"]}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_build_renders_every_clip_through_the_plugin(server: SpeechServer,
                                                     tmp_path: Path) -> None:
    """Each agent clip is rendered by the plugin (non-draft), and the manifest records the
    engine, voice and plugin version; the server saw the configured model and voice."""
    from importlib.metadata import version

    before = len(server.requests)
    result = build(write(tmp_path, server.base_url), tmp_path / "greetings")
    assert not result.failed and not result.drafts, (result.failed, result.drafts)
    clips = manifest(tmp_path / "greetings")
    for key in ("en_default", "en_bye"):
        entry = clips[key]
        assert entry["engine"] == "agent" and entry["voice"] == "alloy"
        assert entry["draft"] is False
        assert f"livekit-plugins-openai=={version('livekit-plugins-openai')}" in str(
            entry["engine_version"])
        assert float(entry["duration"]) > 0.5  # type: ignore[arg-type]
    assert clips["gb_default"]["engine"] == "espeak"
    seen = server.requests[before:]
    assert sorted(r["input"] for r in seen) == ["Goodbye for now.", "Hi! I'm Xiaozhi!"]
    assert {(r["model"], r["voice"], r["response_format"]) for r in seen} == {
        ("gpt-4o-mini-tts", "alloy", "pcm")}


def test_option_change_rerenders_only_that_engines_clips(server: SpeechServer,
                                                         tmp_path: Path) -> None:
    """Changing the engine's model re-renders its clips and reuses the espeak one."""
    out = tmp_path / "greetings"
    build(write(tmp_path, server.base_url), out)
    again = build(write(tmp_path, server.base_url), out)
    assert again.rendered == [] and len(again.reused) == 3
    before = len(server.requests)
    changed = build(write(tmp_path, server.base_url, model="tts-1"), out)
    assert sorted(changed.rendered) == ["en_bye", "en_default"]
    assert changed.reused == ["gb_default"]
    assert {r["model"] for r in server.requests[before:]} == {"tts-1"}


def test_unreachable_server_gives_drafts_with_the_cause(tmp_path: Path) -> None:
    """With nothing listening, the agent clips become espeak drafts whose reason says why."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = build(write(tmp_path, url), tmp_path / "greetings")
    assert sorted(result.drafts) == ["en_bye", "en_default"]
    clips = manifest(tmp_path / "greetings")
    entry = clips["en_default"]
    assert entry["draft"] is True and entry["engine"] == "espeak"
    reason = str(entry["draft_reason"])
    assert reason.startswith("agent failed:") and "connect" in reason.lower(), reason


def test_transient_failure_is_retried_under_the_shared_policy(server: SpeechServer,
                                                              tmp_path: Path) -> None:
    """A 503 is retried once (greetkit's retry policy, not the plugin's) and the clip is real."""
    from greetkit.engines.livekit import RETRY

    assert RETRY.attempts == 2
    before = len(server.requests)
    server.fail_next = [503]
    result = build(write(tmp_path, server.base_url), tmp_path / "greetings")
    assert not result.drafts and not result.failed, (result.drafts, result.failed)
    assert len(server.requests) - before == 3  # two clips, one of them twice


def test_client_error_is_not_retried(server: SpeechServer, tmp_path: Path) -> None:
    """A 400 is final: one request, and the clip is a draft whose reason names the status."""
    before = len(server.requests)
    server.fail_next = [400, 400]
    out = tmp_path / "greetings"
    result = build(write(tmp_path, server.base_url), out)
    assert sorted(result.drafts) == ["en_bye", "en_default"]
    assert len(server.requests) - before == 2  # one per clip, none retried
    reason = str(manifest(out)["en_default"]["draft_reason"])
    assert "400" in reason and "after 1 attempt" in reason, reason


def spec_error(tmp_path: Path, old: str, new: str) -> str:
    """The SpecError text of the agent spec with ``old`` replaced by ``new``."""
    path = write(tmp_path, "http://127.0.0.1:1/v1", model="tts-1")
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


def test_unknown_option_is_a_line_numbered_error(tmp_path: Path) -> None:
    """An option the plugin's constructor does not take is named with its line and a hint."""
    text = spec_error(tmp_path, "response_format: pcm", "respose_format: pcm")
    assert "voices.yaml:5:" in text and "'respose_format'" in text
    assert "did you mean 'response_format'?" in text


def test_unimportable_plugin_is_a_line_numbered_error(tmp_path: Path) -> None:
    """A ``livekit:`` target that cannot be imported says which line and what to install."""
    text = spec_error(tmp_path, "livekit.plugins.openai:TTS", "livekit.plugins.nosuch:TTS")
    assert "voices.yaml:4: engines.agent.livekit: cannot import" in text
    assert "pip install livekit-plugins-nosuch" in text
