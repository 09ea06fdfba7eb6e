"""Manifest format 1 (greetkit before ``files`` keyed by rate) is still read by every reader.

``tests/data/format1_bank`` was written by greetkit's own store and manifest code at format 1
(the 48 kHz file's fields inline in each clip, the 16 kHz files in ``variants``): three
50 ms tones, so the files stay small. Nothing here rewrites it; tests copy it first.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bank import as_format_1

import greetkit
from greetkit.manifest import FORMAT, read_manifest
from greetkit.preview import load_clip
from greetkit.store import Store

FIXTURE = Path(__file__).parent / "data" / "format1_bank"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A private copy of the format-1 bank."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "greetings"))


def test_the_fixture_is_format_1_written_the_old_way() -> None:
    """The fixture really is the old layout: inline 48 kHz fields and a variants list."""
    data = json.loads((FIXTURE / "manifest.json").read_text(encoding="utf-8"))
    clip = data["clips"][0]
    assert data["format"] == 1 and "files" not in clip
    assert clip["sample_rate"] == 48000 and clip["file"].startswith("clips/")
    assert [v["sample_rate"] for v in clip["variants"]] == [16000]


def test_format_1_reads_as_the_same_entries_files_keyed_by_rate() -> None:
    """validate turns the inline file and the variants into ``files`` (48 kHz first) and
    remembers the format it read."""
    manifest = read_manifest(FIXTURE)
    assert manifest is not None and manifest.format == 1 and not manifest.refused
    data = json.loads((FIXTURE / "manifest.json").read_text(encoding="utf-8"))
    for entry, raw in zip(manifest.clips, data["clips"], strict=True):
        assert list(entry.files) == [48000, 16000]
        base, low = entry.files[48000], entry.files[16000]
        assert (base.file, base.sha256, base.bytes, base.data_offset, base.samples) == (
            raw["file"], raw["sha256"], raw["bytes"], raw["data_offset"], raw["samples"])
        assert (low.file, low.samples) == (raw["variants"][0]["file"],
                                          raw["variants"][0]["samples"])
        assert entry.lufs == raw["lufs"] and entry.true_peak_db == raw["true_peak_db"]


def test_the_loader_plays_a_format_1_bank_at_every_rate(old: Path) -> None:
    """greetkit.load maps every file of the old bank, checksums verified, the PCM identical
    to what libsndfile decodes from each file."""
    bank = greetkit.load(old, verify=True, strict=True)
    assert sorted(bank) == ["en_hello", "fallback", "zh_hello"] and not bank.unavailable
    clip = bank["zh_hello"]
    assert clip.rates == (48000, 16000)
    for rate in clip.rates:
        decoded, sr = sf.read(old / clip.entry.files[rate].file, dtype="int16")
        assert sr == rate and np.array_equal(clip.pcm(rate), decoded)
    sel = bank.select("hello", "zh", sample_rate=16000)
    assert sel.clip is clip and sel.sample_rate == 16000 and sel.text == "你好！"


def test_verify_preview_and_gc_read_a_format_1_store(old: Path) -> None:
    """verify finds nothing wrong, preview reads a 16 kHz file, gc keeps every file."""
    store = Store(old)
    assert store.verify() == []
    preview = load_clip(old, "en_hello", rate=16000)
    assert preview.sample_rate == 16000 and preview.pcm.shape == (800,)
    before = sorted(p.name for p in store.clips.iterdir())
    assert store.gc() == [] and sorted(p.name for p in store.clips.iterdir()) == before


def test_a_format_1_bank_is_rewritten_in_the_new_format_when_republished(old: Path) -> None:
    """Publishing what was read (a rollback, a build reusing every clip) writes format 2
    naming the same files; the old version's manifest is kept as it was."""
    store = Store(old)
    manifest = store.manifest()
    assert manifest is not None
    published = store.publish(manifest)
    data = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    assert data["format"] == FORMAT == 2 and published.version == 2
    assert data["clips"][0]["files"]["16000"]["file"] == manifest.clips[0].files[16000].file
    assert json.loads((old / "manifests" / "1.json").read_text())["format"] == 1
    again = store.manifest()
    assert again is not None and again.clips == manifest.clips and store.verify() == []


def test_cli_list_reads_a_format_1_bank(old: Path) -> None:
    """`greetkit list` prints the old bank's clips (a subprocess: the real entry point)."""
    out = subprocess.run([sys.executable, "-m", "greetkit.cli", "list", "--out", str(old)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert all(key in out.stdout for key in ("en_hello", "zh_hello", "fallback"))


def test_a_newer_format_is_refused_naming_both_formats(old: Path) -> None:
    """A manifest from a future greetkit is one line saying which formats this one reads."""
    path = old / "manifest.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"format": 1', '"format": 3'),
                    encoding="utf-8")
    bank = greetkit.load(old)
    assert len(bank) == 0 and bank.problem is not None
    assert "manifest format 3 is not supported by this greetkit (reads formats 1, 2)" in (
        bank.problem)
    assert bank.select("hello", "en").text == "Hello!"  # words recovered, spoken live


def test_a_build_over_a_format_1_store_reuses_every_clip(built_store: Path,
                                                         tmp_path: Path) -> None:
    """Upgrading greetkit re-renders nothing: content keys do not depend on the manifest's
    layout, so a build over the bank's format-1 manifest reuses every clip and writes the
    same files in format 2."""
    from greetkit.build import build

    root = Path(shutil.copytree(built_store.parent, tmp_path / "project"))
    path = root / "greetings" / "manifest.json"
    before = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(as_format_1(copy.deepcopy(before)), ensure_ascii=False),
                    encoding="utf-8")
    assert greetkit.load(root / "greetings", verify=True, strict=True).manifest.format == 1
    result = build(root / "voices.yaml", root / "greetings")
    assert result.rendered == [] and sorted(result.reused) == sorted(c["key"] for c in
                                                                     before["clips"])
    after = json.loads(path.read_text(encoding="utf-8"))
    assert after["format"] == 2
    assert [c["files"] for c in after["clips"]] == [c["files"] for c in before["clips"]]
