"""The engine registry and the third-party entry-point group (greetkit/engines/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from greetkit import engines
from greetkit.build import build
from greetkit.errors import EngineUnavailable, UsageError

PLUGIN = '''
import asyncio
import numpy as np
from greetkit.engines.base import RenderedAudio, VoiceInfo, VoiceList


class ToneEngine:
    """A third-party engine: a 440 Hz tone as long as the text has characters."""

    name = "tone"
    max_concurrency = 2
    offline = True

    def version(self):
        return "tone 1"

    def check_available(self):
        return None

    def validate_voice(self, voice, language, *, project_dir=None):
        return None if voice == "sine" else f"unknown tone voice {voice!r}; use 'sine'"

    def voice_list(self, *, project_dir=None):
        return VoiceList(("WAVE",), (VoiceInfo("sine", ("en", "en-US"), ("sine",)),
                                     VoiceInfo("square", ("de",), ("square",))))

    async def render(self, request):
        n = 2205 * len(request.text)
        t = np.arange(n) / 22050
        return RenderedAudio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[None]:
    """An installed distribution 'greetkit-tone' declaring tone = tone_plugin:ToneEngine."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "tone_plugin.py").write_text(PLUGIN)
    dist = site / "greetkit_tone-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greetkit-tone\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[greetkit.engines]\ntone = tone_plugin:ToneEngine\n")
    sys.path.insert(0, str(site))
    try:
        yield
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("tone_plugin", None)
        engines._instances.pop("tone", None)


def test_plugin_engine_is_registered_and_builds(plugin: None, write_spec) -> None:  # type: ignore[no-untyped-def]
    """An entry-point engine is listed, validated by name and voice, and renders clips."""
    assert "tone" in engines.engine_names()
    assert engines.get_engine("tone").version() == "tone 1"
    spec = ("version: 1\ndefaults: {engine: tone}\n"
            "languages:\n  en: {voices: {tone: sine}}\nphrases:\n  default:\n    en: Hello there\n")
    result = build(write_spec(spec))
    assert result.manifest is not None
    clip = result.manifest.by_key()["en_default"]
    assert clip.engine == "tone" and not clip.draft and abs(clip.lufs + 18) <= 0.05


def test_plugin_voice_check_runs_during_validation(plugin: None, write_spec) -> None:  # type: ignore[no-untyped-def]
    """The plugin's validate_voice is asked; an offline engine's verdict is an error."""
    from greetkit.errors import SpecError
    from greetkit.spec import load_spec

    with pytest.raises(SpecError) as info:
        load_spec(write_spec(
            "version: 1\ndefaults: {engine: tone}\nlanguages:\n  en: {voices: {tone: square}}\n"
            "phrases:\n  default:\n    en: Hello\n"))
    assert [str(i) for i in info.value.issues] == [
        "voices.yaml:4: languages.en.voices.tone: unknown tone voice 'square'; use 'sine'"]


def test_unknown_engine_suggests_a_name() -> None:
    """A typo in an engine name is refused with the closest registered name."""
    with pytest.raises(EngineUnavailable, match="did you mean 'recorded'"):
        engines.get_engine("recordd")


# -- voice catalogues (greetkit voices) ---------------------------------------------------


def test_list_voices_keeps_only_the_language_asked_for() -> None:
    """``zh`` keeps zh-CN/zh-TW voices and drops the rest, for espeak's and edge's lists."""
    edge = engines.list_voices("edge", language="zh").voices
    assert edge and all(v.name.startswith("zh-") for v in edge)
    assert len(edge) < len(engines.list_voices("edge").voices)
    espeak = engines.list_voices("espeak", language="zh").voices
    assert {"sit/cmn", "sit/yue"} <= {v.name for v in espeak}
    assert all(any(c.casefold().startswith("zh") for c in v.languages) for v in espeak)


def test_engine_without_a_voice_list_is_a_usage_error() -> None:
    """'recorded' has no catalogue: a usage error (exit 2) naming the engines that have one."""
    with pytest.raises(UsageError) as info:
        engines.list_voices("recorded")
    assert info.value.exit_code == 2
    assert "'recorded' has no voice list" in str(info.value) and "espeak" in str(info.value)


def test_refresh_of_a_shipped_list_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """espeak's voices ship with it: --refresh is a usage error and nothing is cached."""
    with pytest.raises(UsageError, match="does not apply to 'espeak'"):
        engines.list_voices("espeak", project_dir=tmp_path, refresh=True)
    assert list(tmp_path.iterdir()) == []


def test_plugin_engine_voices_are_listed_by_the_cli(plugin: None) -> None:
    """`greetkit voices -e tone` lists a third-party engine's catalogue: no engine names are
    hard-coded in the command."""
    site = next(p for p in sys.path if p.endswith("site"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([site, *sys.path])}
    out = subprocess.run([sys.executable, "-m", "greetkit.cli", "voices", "-e", "tone", "-l", "en"],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["VOICE", "WAVE"] and lines[1].split() == ["sine", "sine"]
    assert lines[-1] == "1 tone voices for 'en'"
