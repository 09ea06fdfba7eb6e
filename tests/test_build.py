"""Build orchestration with the real espeak engine (greetkit/build.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from greetkit.build import build
from greetkit.errors import DraftsPresent, SpecError
from greetkit.loudness import measure
from greetkit.store import Store

REPO = Path(__file__).resolve().parent.parent

ESPEAK_SPEC = """\
version: 1
defaults:
  engine: espeak
  sample_rates: [48000, 24000]
variables:
  agent_name: Xiaozhi
languages:
  en: {voices: {espeak: en-us}}
  zh: {voices: {espeak: cmn}}
phrases:
  default:
    en: "Hi! I'm {{ agent_name }}!"
    zh: "你好！我是小智！"
  bye:
    en: "Goodbye for now."
fallback:
  text: "Hello! Give me just a moment."
"""


@pytest.fixture(scope="module")
def offline_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The shipped voices.yaml built offline once: edge is unreachable, so espeak drafts."""
    import shutil

    root = tmp_path_factory.mktemp("shipped")
    shutil.copy(REPO / "voices.yaml", root / "voices.yaml")
    shutil.copytree(REPO / "templates", root / "templates")
    mp = pytest.MonkeyPatch()
    mp.setenv("GREETKIT_EDGE_URL", "wss://127.0.0.1:9/edge?TrustedClientToken=x")
    try:
        result = build(root / "voices.yaml")
    finally:
        mp.undo()
    return root, result


def test_offline_build_of_shipped_spec_makes_flagged_drafts(offline_build) -> None:  # type: ignore[no-untyped-def]
    """Every key is built with espeak, marked draft with the reason, nothing failed."""
    root, result = offline_build
    manifest = Store(root / "greetings").manifest()
    assert manifest is not None
    keys = {c.key for c in manifest.clips}
    assert keys == {"en_default", "zh_default", "en_child_friendly", "fallback"}
    for clip in manifest.clips:
        assert clip.draft and clip.engine == "espeak" and clip.preferred_engine == "edge"
        assert clip.draft_reason and "edge" in clip.draft_reason
    assert not result.failed and set(result.drafts) == keys


def test_every_clip_is_48k_mono_pcm16_at_target(offline_build) -> None:  # type: ignore[no-untyped-def]
    """Stored WAVs are 48 kHz mono PCM_16, at -18 LUFS within 0.05 LU, true peak <= ceiling."""
    root, _ = offline_build
    store = Store(root / "greetings")
    manifest = store.manifest()
    assert manifest is not None
    for clip in manifest.clips:
        data = (store.root / clip.base.file).read_bytes()
        info = sf.info(io.BytesIO(data))
        assert (info.samplerate, info.channels, info.subtype) == (48000, 1, "PCM_16")
        pcm, _ = sf.read(io.BytesIO(data), dtype="float32")
        report = measure(pcm, 48000)
        assert abs(report.integrated_lufs - clip.target_lufs) <= 0.05
        assert report.true_peak_db <= clip.true_peak_ceiling_db + 0.01
        assert abs(report.integrated_lufs - clip.lufs) < 0.01
        variant = clip.files[24000]
        vinfo = sf.info(io.BytesIO((store.root / variant.file).read_bytes()))
        assert (vinfo.samplerate, vinfo.channels) == (24000, 1)


def test_noop_rebuild_renders_nothing(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A second build with nothing changed reuses all clips and publishes nothing new."""
    path = write_spec(ESPEAK_SPEC)
    first = build(path)
    assert sorted(first.rendered) == ["en_bye", "en_default", "fallback", "zh_default"]
    before = (path.parent / "greetings" / "manifest.json").read_bytes()
    second = build(path)
    assert second.rendered == [] and len(second.reused) == 4 and not second.published
    assert (path.parent / "greetings" / "manifest.json").read_bytes() == before
    assert second.summary().startswith("nothing to render: 4 clips up to date")


def test_editing_one_phrase_rerenders_only_its_clip(write_spec) -> None:  # type: ignore[no-untyped-def]
    """Changing en 'bye' re-renders en_bye only; old file stays until gc; version bumps."""
    path = write_spec(ESPEAK_SPEC)
    first = build(path)
    assert first.manifest is not None
    old_file = first.manifest.by_key()["en_bye"].base.file
    path.write_text(ESPEAK_SPEC.replace("Goodbye for now.", "See you soon!"))
    second = build(path)
    assert second.rendered == ["en_bye"] and len(second.reused) == 3
    assert second.manifest is not None and second.manifest.version == first.manifest.version + 1
    assert second.manifest.by_key()["en_bye"].text == "See you soon!"
    assert (path.parent / "greetings" / old_file).exists()
    removed = Store(path.parent / "greetings").gc()
    old_variant = first.manifest.by_key()["en_bye"].files[24000].file
    assert {p.name for p in removed} == {Path(old_file).name, Path(old_variant).name}


def test_force_rerenders_all_without_touching_old_files(write_spec) -> None:  # type: ignore[no-untyped-def]
    """--force renders every clip again; files the old manifest names are left byte-identical.

    espeak-ng's output varies by a few samples between calls, so new bytes get new names
    (the name carries the checksum) and nothing a worker has mapped is rewritten.
    """
    path = write_spec(ESPEAK_SPEC)
    first = build(path)
    assert first.manifest is not None
    store = path.parent / "greetings"
    old = {c.base.file: (store / c.base.file).read_bytes() for c in first.manifest.clips}
    again = build(path, force=True)
    assert sorted(again.rendered) == sorted(first.rendered) and again.reused == []
    assert {f: (store / f).read_bytes() for f in old} == old
    assert Store(store).verify() == []


def test_invalid_spec_writes_nothing(write_spec) -> None:  # type: ignore[no-untyped-def]
    """A broken voices.yaml raises SpecError and leaves an existing bank byte-identical."""
    path = write_spec(ESPEAK_SPEC)
    build(path)
    out = path.parent / "greetings"
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    path.write_text(ESPEAK_SPEC.replace("engine: espeak", "engine: nope"))
    with pytest.raises(SpecError):
        build(path)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot


def test_strict_fails_on_drafts(offline_build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--strict raises DraftsPresent when the preferred engine was unreachable."""
    root, _ = offline_build
    with pytest.raises(DraftsPresent, match="4 clips are drafts") as info:
        build(root / "voices.yaml", tmp_path / "out", strict=True)
    # The bank was still built and published: the error carries the result to report.
    result = info.value.result
    assert result is not None and result.published and len(result.drafts) == 4


def test_manifest_texts_cover_every_phrase(offline_build) -> None:  # type: ignore[no-untyped-def]
    """texts lets the loader speak any phrase with live TTS."""
    root, _ = offline_build
    data = json.loads((root / "greetings" / "manifest.json").read_text())
    assert data["texts"]["default"] == {"en": "Hi! I'm Xiaozhi!", "zh": "你好！我是小智！"}
    assert data["format"] == 2 and data["version"] == 1


def test_recorded_take_goes_through_the_chain(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A quiet 44.1 kHz stereo take comes out 48 kHz mono at the target loudness."""
    t = np.arange(44100) / 44100
    tone = 0.05 * np.sin(2 * np.pi * 300 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    (tmp_path / "takes").mkdir()
    sf.write(tmp_path / "takes" / "hi.flac", np.stack([tone, tone], axis=1), 44100)
    spec = ESPEAK_SPEC.replace('    en: "Goodbye for now."',
                               "    en: {text: Goodbye, recording: takes/hi.flac}")
    result = build(write_spec(spec))
    assert result.manifest is not None
    clip = result.manifest.by_key()["en_bye"]
    assert clip.engine == "recorded" and not clip.draft
    assert abs(clip.lufs + 18) <= 0.05 and list(clip.files) == [48000, 24000]


def _ffmpeg_ebur128(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) from ffmpeg's ebur128 filter: an independent meter."""
    import re
    import subprocess

    err = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-af",
                          "ebur128=peak=true", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    summary = err[err.rindex("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary)
    assert integrated and peak, summary
    return float(integrated.group(1)), float(peak.group(1))


def test_independent_meter_agrees_with_manifest(offline_build) -> None:  # type: ignore[no-untyped-def]
    """ffmpeg ebur128: every clip and variant within 0.5 LU of target, peak <= ceiling + 0.1 dB,
    and the manifest's own figures agree with it (ffmpeg prints one decimal)."""
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (CI installs Debian's ffmpeg); no independent meter")
    root, _ = offline_build
    manifest = Store(root / "greetings").manifest()
    assert manifest is not None
    checked = 0
    for clip in manifest.clips:
        files = [(f.file, f.lufs, f.true_peak_db) for f in clip.files.values()]
        for rel, lufs, tp in files:
            integrated, peak = _ffmpeg_ebur128(root / "greetings" / rel)
            assert abs(integrated - clip.target_lufs) <= 0.5, (rel, integrated)
            assert peak <= clip.true_peak_ceiling_db + 0.1, (rel, peak)
            assert abs(integrated - lufs) <= 0.06 and abs(peak - tp) <= 0.1, (rel, lufs, tp)
            checked += 1
    assert checked == 8


def test_force_builds_and_a_one_clip_rebuild_give_identical_bytes(tmp_path: Path) -> None:
    """Same content key, same file bytes: two full --force builds and a rebuild of one clip
    alone (the others reused) write byte-identical clip files."""
    spec = tmp_path / "voices.yaml"
    spec.write_text(SAME_BYTES_SPEC, encoding="utf-8")

    def files(out: Path) -> dict[str, tuple[str, bytes]]:
        data = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        return {c["key"]: (c["content_key"], (out / c["files"]["48000"]["file"]).read_bytes())
                for c in data["clips"]}

    build(spec, tmp_path / "a", force=True)
    build(spec, tmp_path / "a", force=True)
    first = files(tmp_path / "a")
    build(spec, tmp_path / "b", force=True)
    second = files(tmp_path / "b")
    assert first == second
    # A store holding the other clips: the next build renders es_default alone.
    alone = tmp_path / "c"
    spec.write_text(SAME_BYTES_SPEC.replace('    es: "Hola, soy Xiaozhi."\n', ""),
                    encoding="utf-8")
    build(spec, alone)
    spec.write_text(SAME_BYTES_SPEC, encoding="utf-8")
    result = build(spec, alone)
    assert result.rendered == ["es_default"]
    assert files(alone)["es_default"] == first["es_default"]


SAME_BYTES_SPEC = """\
version: 1
defaults: {engine: espeak, language: en}
languages:
  en: {voices: {espeak: en-us}}
  es: {voices: {espeak: es}}
  zh: {voices: {espeak: cmn}}
phrases:
  default:
    en: "Hi! I'm Xiaozhi!"
    zh: "你好！我是小智！"
    es: "Hola, soy Xiaozhi."
fallback: {language: en, text: "Hello! Give me just a moment."}
"""
