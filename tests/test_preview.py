"""greetkit preview (greetkit/preview.py, greetkit/commands/preview.py).

One real espeak build per module; every test runs the real CLI entry point in-process.
Playback is kept off the (absent) sound card deterministically with GREETKIT_AUDIO=none, or
by making ``sounddevice`` unimportable.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from greetkit.build import build
from greetkit.cli import main
from greetkit.errors import SpecError
from greetkit.manifest import Manifest
from greetkit.preview import AUDIO_ENV, envelope, open_clip, play, screen, time_axis, waveform

SPEC = """\
version: 1
defaults: {engine: espeak, sample_rates: [48000, 24000]}
variables: {agent_name: Kit}
languages:
  en: {voices: {espeak: en-us, edge: en-US-AvaNeural}}
  zh: {voices: {espeak: cmn}}
phrases:
  default:
    en: "Hi! I'm {{ agent_name }}."
    zh: "你好！"
"""
BLOCKS = set(" ▁▂▃▄▅▆▇█")


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """A project with a voices.yaml built once with the real espeak engine."""
    root = tmp_path_factory.mktemp("preview")
    (root / "voices.yaml").write_text(SPEC, encoding="utf-8")
    result = build(root / "voices.yaml")
    assert result.manifest is not None and not result.failed
    return root, result.manifest


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``greetkit ARGS`` through the console entry point; (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` with its bytes and modification time."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_preview_prints_summary_waveform_and_one_no_device_line(
        bank: tuple[Path, Manifest], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """preview KEY prints every fact, a 3-row waveform of the requested width, and exactly one
    line saying nothing was played; it exits 0."""
    root, manifest = bank
    monkeypatch.setenv(AUDIO_ENV, "none")
    code, out, err = run(capsys, "preview", "zh_default", "-c", str(root / "voices.yaml"),
                         "--width", "60")
    assert code == 0, err
    entry = manifest.by_key()["zh_default"]
    lines = out.splitlines()
    assert lines[0] == "zh_default"
    assert f"  text       {entry.text}" in lines
    assert "  language   zh" in lines
    assert "  engine     espeak / cmn" in lines
    assert "  status     built" in lines
    assert f"  version    {manifest.version} (built {manifest.built_at})" in lines
    assert any(line.startswith(f"  duration   {entry.duration:.2f} s ({entry.base.samples} samples")
               for line in lines)
    assert f"  loudness   {entry.lufs:.1f} LUFS integrated (target -18.0: ok)" in lines
    assert f"  true peak  {entry.true_peak_db:.1f} dBTP (ceiling -1.5: ok)" in lines
    wave = lines[9:12]
    assert all(len(w) <= 60 and set(w) <= BLOCKS for w in wave)
    assert "█" in wave[-1]  # speech normalized to -18 LUFS reaches the top third
    assert lines[12] == time_axis(entry.duration, 60)
    assert lines[13:] == ["not played: audio output disabled (GREETKIT_AUDIO=none); write it "
                          "with --wav FILE.wav to listen elsewhere"]


def test_no_sounddevice_is_one_line_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sounddevice (the 'preview' extra) play() says what to install, in one line."""
    monkeypatch.delenv(AUDIO_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import now raises ImportError
    message = play(np.zeros(480, dtype=np.int16), 48000)
    assert message is not None and "\n" not in message
    assert "pip install 'greetkit[preview]'" in message


def test_out_writes_the_stored_bytes(bank: tuple[Path, Manifest], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--wav FILE.wav is a byte-for-byte copy of the stored clip, and the hint to use --wav is
    not repeated once it was given."""
    root, manifest = bank
    monkeypatch.setenv(AUDIO_ENV, "none")
    target = tmp_path / "zh.wav"
    code, out, _ = run(capsys, "preview", "zh_default", "-c", str(root / "voices.yaml"),
                       "--wav", str(target))
    assert code == 0
    stored = root / "greetings" / manifest.by_key()["zh_default"].base.file
    assert target.read_bytes() == stored.read_bytes()
    assert out.splitlines()[-1] == "not played: audio output disabled (GREETKIT_AUDIO=none)"


def test_out_names_the_store_as_in_every_command(bank: tuple[Path, Manifest], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """-o/--out is the store to read (as for build, list, verify), not a WAV to write."""
    root, _ = bank
    monkeypatch.setenv(AUDIO_ENV, "none")
    elsewhere = shutil.copytree(root / "greetings", tmp_path / "moved")
    code, out, err = run(capsys, "preview", "zh_default", "-c", str(tmp_path / "none.yaml"),
                         "-o", str(elsewhere), "--no-play")
    assert code == 0, err
    assert "你好" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved"]  # nothing written


def test_rate_picks_the_stored_variant(bank: tuple[Path, Manifest], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """--rate 24000 shows and writes the 24 kHz variant, not the 48 kHz clip."""
    root, manifest = bank
    monkeypatch.setenv(AUDIO_ENV, "none")
    variant = manifest.by_key()["en_default"].files[24000]
    target = tmp_path / "en24.wav"
    code, out, _ = run(capsys, "preview", "en_default", "--rate", "24000", "--no-play",
                       "-c", str(root / "voices.yaml"), "-w", str(target))
    assert code == 0
    assert target.read_bytes() == (root / "greetings" / variant.file).read_bytes()
    assert f"({variant.samples} samples at 24000 Hz" in out
    assert "not played" not in out  # --no-play: no playback line at all


def test_rate_without_variant_exits_2(bank: tuple[Path, Manifest],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A rate that was not built is a usage error naming the rates that were."""
    root, _ = bank
    code, _, err = run(capsys, "preview", "en_default", "--rate", "16000", "--no-play",
                       "-c", str(root / "voices.yaml"))
    assert code == 2
    assert "'en_default at 48000 Hz', 'en_default at 24000 Hz'" in err


def test_unknown_key_exits_2_with_closest_keys(bank: tuple[Path, Manifest],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped key exits 2 and suggests the closest keys, closest first."""
    root, _ = bank
    code, out, err = run(capsys, "preview", "zh_defualt", "-c", str(root / "voices.yaml"))
    assert code == 2
    assert out == ""
    assert err == "greetkit: no clip 'zh_defualt'; did you mean 'zh_default', 'en_default'?\n"


def test_corrupted_clip_is_refused(bank: tuple[Path, Manifest], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A clip whose bytes differ from the manifest is reported (exit 1), not played."""
    root, manifest = bank
    copy = tmp_path / "project"
    shutil.copytree(root, copy)
    clip = copy / "greetings" / manifest.by_key()["en_default"].base.file
    data = bytearray(clip.read_bytes())
    data[-1] ^= 0x01
    clip.write_bytes(bytes(data))
    code, out, err = run(capsys, "preview", "en_default", "-c", str(copy / "voices.yaml"))
    assert code == 1
    assert "does not match the manifest" in err and "greetkit verify" in err
    assert out == ""


def test_audition_renders_text_without_touching_the_store(
        bank: tuple[Path, Manifest], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--text renders through the engine and the DSP chain with the spec's variables and
    loudness, prints the summary, and leaves every file of the project as it was."""
    root, _ = bank
    monkeypatch.setenv(AUDIO_ENV, "none")
    before = snapshot(root)
    target = tmp_path / "audition.wav"
    code, out, err = run(capsys, "preview", "--text", "Welcome back, {{ agent_name }}!",
                         "--language", "en", "-c", str(root / "voices.yaml"), "--width", "40",
                         "--wav", str(target))
    assert code == 0, err
    assert snapshot(root) == before
    lines = out.splitlines()
    assert lines[0] == "audition"
    assert "  text       Welcome back, Kit!" in lines
    assert "  engine     espeak / en-us" in lines
    assert "  version    audition, not stored" in lines
    assert "  loudness   " in out and "(target -18.0: ok)" in out
    assert any("█" in line for line in lines)
    import soundfile as sf

    audio, rate = sf.read(target, dtype="int16")
    assert rate == 48000 and audio.ndim == 1 and audio.size > rate // 2


def test_audition_drafts_with_espeak_when_engine_is_unreachable(
        bank: tuple[Path, Manifest], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With edge unreachable (closed local port), the audition is an espeak draft and says
    why, like a build would."""
    root, _ = bank
    monkeypatch.setenv(AUDIO_ENV, "none")
    code, out, err = run(capsys, "preview", "--text", "Good morning!", "--engine", "edge",
                         "--language", "en", "-c", str(root / "voices.yaml"), "--no-play")
    assert code == 0, err
    assert "  engine     espeak / en-us" in out
    status = next(line for line in out.splitlines() if line.startswith("  status"))
    assert status.startswith("  status     DRAFT (preferred engine edge: edge unavailable:")


def test_key_and_text_together_is_a_usage_error(bank: tuple[Path, Manifest],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Either a clip KEY or --text: both at once exits 2 before any work."""
    root, _ = bank
    code, _, err = run(capsys, "preview", "en_default", "--text", "Hi",
                       "-c", str(root / "voices.yaml"))
    assert code == 2
    assert "give a clip KEY or --text, not both" in err


def test_waveform_rows_are_exact_for_known_audio() -> None:
    """Silence draws nothing, full scale fills every row, half scale fills half the rows:
    the drawing is a pure function of the samples."""
    pcm = np.concatenate([np.zeros(1000), np.full(1000, 32767), np.full(1000, -16384)])
    lines = waveform(pcm.astype(np.int16), 2 + 30, rows=3)
    assert lines == [
        "  " + " " * 10 + "█" * 10,
        "  " + " " * 10 + "█" * 10 + "▄" * 10,
        "  " + " " * 10 + "█" * 20,
    ]


def test_envelope_splits_samples_into_columns() -> None:
    """Each column holds the minimum and maximum of its own run of samples."""
    pcm = np.array([1, -2, 3, -4, 5, -6], dtype=np.int16) * 4096
    lo, hi = envelope(pcm, 3)
    assert lo.tolist() == [-0.25, -0.5, -0.75]
    assert hi.tolist() == [0.125, 0.375, 0.625]


def test_open_clip_is_the_library_side_of_the_command(bank: tuple[Path, Manifest]) -> None:
    """open_clip gives the stored clip for a key and an unstored audition for text; what
    preview prints is screen(): the summary, then the waveform rows, then the time axis."""
    root, manifest = bank
    stored = open_clip("en_default", store=root / "greetings", config=root / "voices.yaml")
    assert stored.stored and stored.version == manifest.version and stored.stale is None
    heard = open_clip(text="Hello!", config=root / "voices.yaml", rate=16000)
    assert not heard.stored and heard.sample_rate == 16000 and heard.key == "audition"
    lines = screen(stored, 40)
    assert lines[0] == "en_default"
    assert lines[-1] == time_axis(stored.duration, 40)
    assert lines[-4:-1] == waveform(stored.pcm, 40)


@pytest.mark.parametrize(("key", "text", "engine", "message"), [
    (None, None, None, "give a clip KEY or --text, not both"),
    ("en_default", "Hi", None, "give a clip KEY or --text, not both"),
    ("en_default", None, "espeak", "--language/--voice/--engine go with --text"),
])
def test_open_clip_usage_mistakes_are_spec_errors(bank: tuple[Path, Manifest], key: str | None,
                                                  text: str | None, engine: str | None,
                                                  message: str) -> None:
    """Neither or both of KEY and text, or audition options for a stored clip: a SpecError
    (exit code 2) before any work, raised by the library, not the command."""
    root, _ = bank
    with pytest.raises(SpecError, match=message) as info:
        open_clip(key, text=text, engine=engine, store=root / "greetings")
    assert info.value.exit_code == 2
