"""Manifest serialization (greetkit/manifest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bank import clip_entry, clip_file, edit_manifest, variant_file

import greetkit
from greetkit.errors import StoreError
from greetkit.manifest import FORMAT, ClipEntry, ClipFile, EngineRecord, Manifest, json_depth

ENTRY = dict(key="zh_default", phrase="default", language="zh", text="你好", engine="espeak",
             voice="cmn", preferred_engine="edge", draft=True, draft_reason="edge unavailable",
             content_key="ck", channels=1, duration=0.0001, target_lufs=-18.0,
             true_peak_ceiling_db=-1.5, gain_db=2.0, limiter_db=0.5, warnings=("short",),
             files={48000: ClipFile(sample_rate=48000, file="clips/a.wav", sha256="a" * 64,
                                    bytes=10, data_offset=44, samples=3, lufs=-18.0,
                                    true_peak_db=-1.6),
                    24000: ClipFile(sample_rate=24000, file="clips/b.wav", sha256="b" * 64,
                                    bytes=8, data_offset=44, samples=2, lufs=-18.0,
                                    true_peak_db=-1.7)})


def test_round_trip_keeps_every_field() -> None:
    """dumps -> loads gives an equal manifest, Chinese text unescaped."""
    m = Manifest(version=3, built_at="t", generator="g", default_language="en",
                 languages=("en", "zh"), phrases=("default",), clips=(ClipEntry(**ENTRY),),
                 texts={"default": {"zh": "你好"}})
    text = m.dumps()
    assert "你好" in text
    again = Manifest.from_json(json.loads(text))
    assert again == m
    assert list(again.clips[0].files) == [48000, 24000]
    assert again.clips[0].base.file == "clips/a.wav" and again.clips[0].lufs == -18.0
    assert json.loads(text)["format"] == FORMAT == 2
    assert list(json.loads(text)["clips"][0]["files"]) == ["48000", "24000"]


def test_round_trip_keeps_the_engines_record() -> None:
    """The LiveKit engine entry a build used (target, options, plugin, level) survives."""
    record = EngineRecord(livekit="livekit.plugins.openai:TTS",
                          options={"model": "gpt-4o-mini-tts", "speed": 1.1},
                          plugin="livekit-plugins-openai==1.8.9", lufs=-29.61)
    m = Manifest(version=1, built_at="t", generator="g", default_language="en",
                 languages=("en",), phrases=(), clips=(), engines={"agent": record})
    again = Manifest.from_json(json.loads(m.dumps()))
    assert again.engines == {"agent": record}
    assert "engines" not in json.loads(Manifest(**{**m.__dict__, "engines": {}}).dumps())


def test_missing_required_field_is_reported() -> None:
    """A manifest without 'clips' is malformed, with a fix."""
    with pytest.raises(StoreError,
                       match=r"malformed: clips: expected a list, got null \(or missing\)"):
        Manifest.from_json({"format": FORMAT, "version": 1, "built_at": "t",
                            "default_language": "en"})


# -- the schema: the audit's failures (issue 17), each refused with one message ---------------

#: (field set on en_bye's entry, value, what the refusal names). Each of these raised from
#: greetkit.load or greetkit verify before the manifest was validated as a schema.
#: Fields of one stored file (format 2 keeps them under ``files.<rate>``).
FILE_FIELDS = {"file", "sha256", "bytes", "data_offset", "samples", "lufs", "true_peak_db"}
CLIP_DAMAGE = [
    ("samples", {"n": 1}, "samples: expected an integer, got an object"),
    ("language", {"en": 1}, "language: expected a string, got an object"),
    ("file", 3.5, "file: expected a string, got a number"),
    ("file", ["clips/x.wav"], "file: expected a string, got a list"),
    ("file", "clips/\0x.wav", "file: path 'clips/\\x00x.wav' holds a control character"),
    ("file", "/etc/passwd", "is absolute"),
    ("file", "clips/../../x.wav", "leaves the store"),
    ("sha256", ["ab"], "sha256: expected a string, got a list"),
    ("bytes", {"size": 3}, "bytes: expected an integer, got an object"),
    ("bytes", -5, "bytes: -5 is out of range"),
    ("bytes", 10**400, "bytes: 100000000000... (401 digits) is out of range"),
    ("data_offset", "44", "data_offset: expected an integer, got a string"),
    ("duration", float("nan"), "duration: nan is out of range"),
    ("lufs", float("inf"), "lufs: inf is out of range"),
    ("draft", 1, "draft: expected true or false"),
]


@pytest.mark.parametrize(("name", "value", "named"), CLIP_DAMAGE,
                         ids=[f"{n}={v!r:.20}" for n, v, _ in CLIP_DAMAGE])
def test_a_clip_field_of_the_wrong_type_or_range_refuses_that_clip_only(
        store: Path, name: str, value: Any, named: str) -> None:
    """greetkit.load does not raise: the damaged clip is unavailable with one line naming the
    manifest, the clip and the field; its words are spoken live; the other clips play."""
    edit_manifest(store, lambda d: _damage(d, name, value))
    bank = greetkit.load(store)
    problem = bank.unavailable["en_bye"]
    assert named in problem and "manifest.json: clips[" in problem and "\n" not in problem
    assert problem.endswith("the clip is refused, rebuild with 'greetkit build --force'")
    sel = bank.select("bye", "en")
    assert sel.clip is None and sel.text == "Goodbye for now."
    assert sorted(bank) == ["en_default", "fallback", "zh_default"]


@pytest.mark.parametrize(("name", "value", "named"), CLIP_DAMAGE[:5:2],
                         ids=[f"{n}={v!r:.20}" for n, v, _ in CLIP_DAMAGE[:5:2]])
def test_verify_names_a_refused_clip_and_exits_1(store: Path, name: str, value: Any,
                                                  named: str) -> None:
    """`greetkit verify` prints the refusal as one 'greetkit:' line and exits 1, no traceback."""
    edit_manifest(store, lambda d: _damage(d, name, value))
    result = _cli("verify", "--out", str(store))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert named in result.stderr and "en_bye" in result.stderr


def _damage(data: dict[str, Any], name: str, value: Any) -> None:
    """Set field ``name`` of en_bye (of its 48 kHz file for a file's field) to ``value``."""
    target = clip_file(data, "en_bye") if name in FILE_FIELDS else clip_entry(data, "en_bye")
    target[name] = value


def test_a_variant_of_the_wrong_type_refuses_its_clip(store: Path) -> None:
    """A 24 kHz file whose samples is a string refuses the clip (one message naming it)."""
    edit_manifest(store, lambda d: variant_file(d, "en_bye").update(samples="24000"))
    bank = greetkit.load(store)
    assert "files.24000.samples: expected an integer" in bank.unavailable["en_bye"]


@pytest.mark.parametrize(("files", "named"), [
    ({"24k": {}}, "files: key '24k' is not a sample rate"),
    ({"048000": {}}, "files: key '048000' is not a sample rate"),
    ({}, "files: expected an object of 1 to 64 files"),
    ([], "files: expected an object of 1 to 64 files"),
    (None, "files: expected an object of 1 to 64 files"),
], ids=["word", "leading-zero", "empty", "list", "missing"])
def test_files_not_keyed_by_rate_refuse_the_clip(store: Path, files: Any, named: str) -> None:
    """``files`` must be an object keyed by decimal sample rates."""
    edit_manifest(store, lambda d: clip_entry(d, "en_bye").update(files=files))
    assert named in greetkit.load(store).unavailable["en_bye"]


def test_a_clip_without_a_48_khz_file_is_refused(store: Path) -> None:
    """Every clip has a 48 kHz file (what plays when no rate is asked for)."""
    edit_manifest(store, lambda d: clip_entry(d, "en_bye")["files"].pop("48000"))
    problem = greetkit.load(store).unavailable["en_bye"]
    assert "files: no 48000 Hz file (has 24000)" in problem


def test_a_duplicate_key_refuses_the_second_clip(store: Path) -> None:
    """Two entries with one key: the second is refused, the first still plays."""
    def dup(d: dict[str, Any]) -> None:
        d["clips"].append(dict(clip_entry(d, "en_bye"), phrase="other"))
    edit_manifest(store, dup)
    bank = greetkit.load(store)
    assert bank.select("bye", "en").clip is not None
    assert "key: 'en_bye' is used by an earlier clip" in bank.unavailable["en_bye"]


@pytest.mark.parametrize(("change", "named"), [
    (lambda d: d.update(version=float("inf")), "version: expected an integer, got a number inf"),
    (lambda d: d.update(version=-1), "version: -1 is out of range"),
    (lambda d: d.update(version=True), "version: expected an integer, got a boolean"),
    (lambda d: d.update(format=True), "manifest format True is not supported"),
    (lambda d: d.update(clips={"a": 1}), "clips: expected a list, got an object"),
    (lambda d: d.update(texts=[]), "texts: expected an object, got a list"),
    (lambda d: d.update(default_language=None), "default_language: expected a string"),
    (lambda d: d.update(languages="en"), "languages: expected a list of strings"),
    (lambda d: d.update(engines=[]), "engines: expected an object, got a list"),
    (lambda d: d.update(engines={"agent": {"livekit": "os:system;rm", "plugin": "p==1",
                                           "lufs": -20.0}}),
     "engines.agent.livekit: 'os:system;rm' is not 'module:callable'"),
    (lambda d: d.update(engines={"agent": {"livekit": "m:TTS", "options": [1],
                                           "plugin": "p==1", "lufs": -20.0}}),
     "engines.agent.options: expected an object, got a list"),
    (lambda d: d.update(engines={"agent": {"livekit": "m:TTS", "plugin": "p==1",
                                           "lufs": "-20"}}),
     "engines.agent.lufs: expected a number, got a string"),
    (lambda d: d.update(engines={"agent": {"livekit": "m:TTS", "plugin": "p==1",
                                           "lufs": 1e308}}),
     "engines.agent.lufs: 1e+308 is out of range"),
], ids=["version-inf", "version-negative", "version-bool", "format-bool", "clips-object",
        "texts-list", "default-null", "languages-string", "engines-list", "engines-target",
        "engines-options-list", "engines-lufs-string", "engines-lufs-range"])
def test_a_bad_top_level_refuses_the_manifest_but_load_speaks_live(
        store: Path, change: Any, named: str) -> None:
    """A bad top-level field: load gives an empty bank whose problem names the field, and the
    texts it can still read are spoken live; strict=True raises StoreError."""
    edit_manifest(store, change)
    bank = greetkit.load(store)
    assert len(bank) == 0 and bank.problem is not None and named in bank.problem
    with pytest.raises(StoreError, match="manifest"):
        greetkit.load(store, strict=True)


def test_json_nested_2000_deep_is_refused_before_decoding(store: Path) -> None:
    """2,000 nested lists (the decoder's RecursionError) are refused with the depth named."""
    text = (store / "manifest.json").read_text(encoding="utf-8")
    deep = text[:-1] + ', "extra": ' + "[" * 2000 + "]" * 2000 + "}"
    (store / "manifest.json").write_text(deep, encoding="utf-8")
    bank = greetkit.load(store)
    assert len(bank) == 0 and bank.problem is not None
    assert "nests 2001 levels deep (a manifest has at most 32)" in bank.problem
    result = _cli("verify", "--out", str(store))
    assert result.returncode == 1 and "nests 2001 levels" in result.stderr
    assert "Traceback" not in result.stderr


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """json_depth skips string contents, escaped quotes included."""
    assert json_depth(b'{"a": "[[[[\\"[[[", "b": [[1]]}') == 3
    assert json_depth(b"[]") == 1 and json_depth(b'"x"') == 0


def test_an_oversized_manifest_is_refused_from_its_size(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest over the size cap is refused by its file size, before it is read."""
    import greetkit.manifest as manifest_module

    size = (store / "manifest.json").stat().st_size
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", size - 1)
    bank = greetkit.load(store)
    assert bank.problem is not None and f"manifest is {size} bytes, more than" in bank.problem


def test_gc_deletes_nothing_while_the_manifest_refuses_clips(store: Path) -> None:
    """gc against a manifest with a refused clip stops with the refusal: its files survive."""
    edit_manifest(store, lambda d: clip_file(d, "en_bye").update(samples="many"))
    before = sorted(p.name for p in (store / "clips").iterdir())
    result = _cli("gc", "--out", str(store))
    assert result.returncode == 1 and "gc deletes nothing" in result.stderr
    assert sorted(p.name for p in (store / "clips").iterdir()) == before


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "greetkit.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)
