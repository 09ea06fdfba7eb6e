"""The loader (greetkit/loader.py): mmap-backed banks, checks, selection, reload, sharing.

Stores are real: built by greetkit.build from a voices.yaml (espeak-ng speech, the DSP
chain, libsndfile WAVs in greetkit.store), with a 24 kHz variant per clip.
"""

from __future__ import annotations

import gc
import json
import logging
import mmap
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from bank import CLIPS, RATES, clip_entry, clip_file, edit_manifest, flip_byte, variant_file

import greetkit
from greetkit.errors import ClipNotFound, StoreError, VerifyError
from greetkit.loader import Bank, load

REPO = Path(__file__).resolve().parent.parent

@pytest.fixture
def warnings_(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """The greetkit warnings logged so far in the test."""
    caplog.set_level(logging.INFO, logger="greetkit")

    def read() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "greetkit" and r.levelno >= logging.WARNING]

    yield read


# -- loading -----------------------------------------------------------------------------------

def test_load_maps_every_clip_with_its_text_and_language(built_store: Path) -> None:
    """Every manifest clip is in the bank with its text, language, phrase and duration."""
    bank = greetkit.load(built_store)
    assert sorted(bank) == sorted(k for k, *_ in CLIPS)
    for key, phrase, language, _, text in CLIPS:
        clip = bank[key]
        assert (clip.phrase, clip.language, clip.text) == (phrase, language, text)
        assert clip.duration == pytest.approx(clip.samples.shape[0] / 48000)
        assert clip.duration > 0.3
    assert not bank.unavailable and bank.problem is None and bank.version == 1


def test_samples_equal_the_wav_decoded_by_libsndfile(built_store: Path) -> None:
    """The mapped 48 kHz PCM and the 24 kHz variant equal what libsndfile decodes."""
    bank = load(built_store)
    for clip in bank.values():
        decoded, rate = sf.read(built_store / clip.entry.base.file, dtype="int16")
        assert rate == 48000 and np.array_equal(clip.samples, decoded)
        variant = clip.entry.files[24000]
        decoded24, rate24 = sf.read(built_store / variant.file, dtype="int16")
        assert rate24 == 24000 and np.array_equal(clip.pcm(24000), decoded24)
        assert clip.rates == (48000, 24000)


def test_samples_are_read_only_views_of_a_file_mapping(built_store: Path) -> None:
    """PCM is a read-only int16 view whose memory is the mmap of the file, not a copy."""
    clip = load(built_store)["en_default"]
    assert clip.samples.dtype == np.dtype("<i2")
    assert not clip.samples.flags.writeable
    base = clip.samples.base
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    with pytest.raises(ValueError):
        clip.samples[0] = 1


def test_load_logs_clips_bytes_and_time(built_store: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """One info line at load names the clip count, the bytes mapped and the load time."""
    caplog.set_level(logging.INFO, logger="greetkit")
    bank = load(built_store)
    lines = [r.getMessage() for r in caplog.records if r.name == "greetkit"]
    assert len(lines) == 1
    assert f"{len(CLIPS)} clips" in lines[0] and "MB mapped" in lines[0] and " ms" in lines[0]
    assert bank.nbytes == sum(
        sum((built_store / f.file).stat().st_size for f in c.entry.files.values())
        for c in bank.values())


def test_unknown_key_raises_clip_not_found_with_suggestion(built_store: Path) -> None:
    """bank[key] for an unknown key raises ClipNotFound (a KeyError) suggesting close keys."""
    bank = load(built_store)
    with pytest.raises(ClipNotFound, match="en_default") as err:
        bank["en_defualt"]
    assert isinstance(err.value, KeyError) and "x" not in bank


# -- selection ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("language", "expected", "via"), [
    ("zh", "zh_default", "exact"),
    ("ZH", "zh_default", "exact"),
    ("zh-CN", "zh_default", "base"),
    ("zh_TW", "zh_default", "base"),
    ("en_US", "en_default", "base"),
    ("fr-FR", "en_default", "default"),
    (None, "en_default", "default"),
])
def test_resolve_falls_back_exact_base_default(built_store: Path, language: str | None,
                                               expected: str, via: str) -> None:
    """Exact language (case-insensitive) → base language → the default language."""
    bank = load(built_store)
    clip = bank.resolve("default", language=language)
    assert clip is not None and clip.key == expected
    assert bank.select("default", language).via == via


def test_resolve_unknown_phrase_gives_the_fallback_clip(built_store: Path) -> None:
    """A phrase the bank does not know resolves to the fallback clip."""
    bank = load(built_store)
    clip = bank.resolve("no_such_phrase", language="zh")
    assert clip is not None and clip.key == "fallback"


def test_resolve_gives_none_without_a_fallback_clip(store: Path) -> None:
    """With no fallback clip (and no fallback text), an unknown phrase resolves to None."""
    def drop_fallback(data: dict[str, Any]) -> None:
        data["clips"] = [c for c in data["clips"] if c["phrase"] != "fallback"]
        data["texts"].pop("fallback")

    edit_manifest(store, drop_fallback)
    bank = load(store)
    assert bank.resolve("no_such_phrase", "en") is None
    assert bank.select("no_such_phrase", "en").via == "none"


def test_unbuilt_phrase_selects_its_text_not_another_clip(built_store: Path) -> None:
    """A phrase with text but no clip resolves to None and carries the text for live TTS."""
    bank = load(built_store)
    selection = bank.select("thanks", "en-GB")
    assert selection.clip is None and selection.text == "Thank you for calling."
    assert bank.resolve("thanks", "en") is None


def test_variables_prefer_a_phrase_named_after_their_value(store: Path) -> None:
    """resolve(phrase, time_of_day=v) prefers phrase '<phrase>_<v>' and else uses phrase."""
    def add_morning(data: dict[str, Any]) -> None:
        morning = dict(clip_entry(data, "en_bye"), key="en_default_morning",
                       phrase="default_morning")
        data["clips"].append(morning)

    edit_manifest(store, add_morning)
    bank = load(store)
    chosen = bank.resolve("default", "en", time_of_day="morning")
    assert chosen is not None and chosen.key == "en_default_morning"
    plain = bank.resolve("default", "en", time_of_day="evening")
    assert plain is not None and plain.key == "en_default"


# -- per-clip checks ---------------------------------------------------------------------------

def test_missing_file_makes_only_that_clip_unavailable(store: Path, warnings_: Any) -> None:
    """A missing clip file: that clip is unavailable with one warning, the rest still load,
    and its text is still known."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    (store / clip_file(data, "en_default")["file"]).unlink()
    bank = load(store)
    assert "en_default" not in bank and "missing" in bank.unavailable["en_default"]
    assert set(bank) == {"zh_default", "en_bye", "fallback"}
    assert bank.text("default", "en") == "Hi! I'm Xiaozhi!"
    assert len(warnings_()) == 1 and "en_default" in warnings_()[0]


def test_truncated_file_fails_the_size_check(store: Path, warnings_: Any) -> None:
    """A file shorter than the manifest's bytes is unavailable at load."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    path = store / clip_file(data, "zh_default")["file"]
    path.write_bytes(path.read_bytes()[:-100])
    bank = load(store)
    assert "zh_default" not in bank and "bytes" in bank.unavailable["zh_default"]
    assert len(warnings_()) == 1


def test_corrupt_bytes_fail_the_checksum_lazily_or_at_load(store: Path, warnings_: Any) -> None:
    """Same-size corruption passes the fast checks; the checksum catches it on first play
    (default) or at load with verify=True."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    flip_byte(store / clip_file(data, "en_bye")["file"])
    lazy = load(store)
    assert "en_bye" in lazy and "checksum" in lazy.playable(lazy["en_bye"])
    assert lazy.playable(lazy["en_default"]) == ""
    assert warnings_() == []
    eager = load(store, verify=True)
    # Only the 48 kHz file is bad: the clip stays, its 24 kHz file still plays.
    assert "en_bye" in eager and "en_bye" not in eager.unavailable
    assert eager.select("bye", "en", sample_rate=48000).sample_rate == 24000
    assert len(warnings_()) == 1 and "48000 Hz disabled" in warnings_()[0]
    assert load(store, verify=False).playable(lazy["en_bye"]) == ""


def test_bad_wav_header_is_unavailable(store: Path) -> None:
    """A manifest data_offset that does not match the WAV's data chunk is refused."""
    edit_manifest(store, lambda d: clip_file(d, "en_bye").update(data_offset=46))
    bank = load(store)
    assert "en_bye" not in bank and "header" in bank.unavailable["en_bye"]


def test_bad_variant_drops_only_the_variant(store: Path, warnings_: Any) -> None:
    """A broken 24 kHz variant leaves the 48 kHz clip playable, without that rate."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    (store / variant_file(data, "en_default")["file"]).unlink()
    bank = load(store)
    assert bank["en_default"].rates == (48000,)
    assert len(warnings_()) == 1 and "24000 Hz variant" in warnings_()[0]


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink_file", "symlink_dir"])
def test_paths_leaving_the_store_are_refused(store: Path, tmp_path: Path, how: str) -> None:
    """Absolute paths, '..' and symlinks (file or directory) leading outside are refused,
    even when the target is a valid copy of the clip."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    rel = clip_file(data, "en_default")["file"]
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / Path(rel).name
    shutil.copy(store / rel, target)
    if how == "absolute":
        edit_manifest(store, lambda d: clip_file(d, "en_default").update(file=str(target)))
    elif how == "dotdot":
        edit_manifest(store, lambda d: clip_file(d, "en_default").update(
            file=f"clips/../../outside/{target.name}"))
    elif how == "symlink_file":
        (store / rel).unlink()
        (store / rel).symlink_to(target)
    else:
        edit_manifest(store, lambda d: clip_file(d, "en_default").update(
            file=f"linked/{target.name}"))
        (store / "linked").symlink_to(outside, target_is_directory=True)
    bank = load(store)
    assert "en_default" not in bank
    assert "en_default" in bank.unavailable


def test_strict_raises_verify_error_for_bad_clips(store: Path) -> None:
    """strict=True (for tools) raises VerifyError naming the bad clip instead of skipping it."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    (store / clip_file(data, "en_bye")["file"]).unlink()
    with pytest.raises(VerifyError, match="en_bye"):
        load(store, strict=True)


# -- whole-store failures ----------------------------------------------------------------------

def test_empty_directory_gives_an_empty_bank_and_one_error(tmp_path: Path,
                                                          warnings_: Any) -> None:
    """No manifest: an empty bank with the reason, one ERROR, nothing raised."""
    bank = load(tmp_path)
    assert len(bank) == 0 and bank.problem and "manifest.json" in bank.problem
    assert bank.resolve("default", "en") is None
    assert len(warnings_()) == 1
    with pytest.raises(StoreError):
        load(tmp_path, strict=True)


def test_missing_directory_is_an_error_naming_the_absolute_path_and_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A store path that does not exist loads as an empty bank (the agent still runs), with
    one ERROR naming the absolute path and how to fix it."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="greetkit")
    bank = load("nope")
    assert len(bank) == 0 and bank.version is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert str(tmp_path / "nope") in errors[0] and "greetkit build" in errors[0]
    assert "absolute" in errors[0]


def test_corrupt_manifest_gives_an_empty_bank(store: Path, warnings_: Any) -> None:
    """Unparseable JSON: an empty bank, one warning; strict raises StoreError."""
    (store / "manifest.json").write_text('{"format": 1, "clips": [', encoding="utf-8")
    bank = load(store)
    assert len(bank) == 0 and "JSON" in (bank.problem or "")
    assert len(warnings_()) == 1
    with pytest.raises(StoreError):
        load(store, strict=True)


def test_future_format_keeps_the_texts_it_can_read(store: Path, warnings_: Any) -> None:
    """A newer manifest format: no clips, but phrase texts are recovered for live TTS."""
    edit_manifest(store, lambda d: d.update(format=99))
    bank = load(store)
    assert len(bank) == 0 and "format 99" in (bank.problem or "")
    assert bank.text("default", "zh-CN") == "你好！我是小智！"
    assert bank.text("anything", "fr") == "Hello! Give me just a moment."
    assert len(warnings_()) == 1


# -- reload ------------------------------------------------------------------------------------

def test_reload_picks_up_a_new_version_without_disturbing_the_old(store: Path) -> None:
    """A newly published manifest is seen by reload(); the old bank still plays its clips,
    and files both versions name are mapped once, not twice."""
    old = load(store)
    before = {k: old[k].samples.copy() for k in old}

    def v2(data: dict[str, Any]) -> None:
        data["version"] = 2
        data["clips"] = [c for c in data["clips"] if c["key"] != "en_bye"]

    edit_manifest(store, v2)
    new = old.reload()
    assert (old.version, new.version) == (1, 2)
    assert "en_bye" in old and "en_bye" not in new
    for key, pcm in before.items():
        assert np.array_equal(old[key].samples, pcm)
    assert new["en_default"].samples is old["en_default"].samples


# -- optional extra ----------------------------------------------------------------------------

def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=False)


def test_load_finishes_the_livekit_imports_the_first_say_needs(built_store: Path) -> None:
    """With the extra installed, load() imports greetkit.agents (and livekit) so the first
    say of a job imports nothing on the event loop; importing the loader alone does not."""
    result = _run_python(
        "import sys, greetkit.loader\n"
        "print('greetkit.agents' in sys.modules)\n"
        f"bank = greetkit.load({str(built_store)!r})\n"
        "print('greetkit.agents' in sys.modules, 'livekit.rtc' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True"]


def test_without_livekit_frames_names_the_extra(built_store: Path) -> None:
    """With livekit absent the bank loads and serves PCM; frames() raises MissingExtra
    naming 'greetkit[livekit]'."""
    result = _run_python(
        "import sys\n"
        "sys.modules['livekit'] = None  # as if the extra were not installed\n"
        "import greetkit\n"
        "from greetkit.errors import MissingExtra\n"
        f"bank = greetkit.load({str(built_store)!r})\n"
        "assert bank['en_default'].samples.size > 0\n"
        "try:\n"
        "    bank.frames('en_default')\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n")
    assert result.returncode == 0, result.stderr
    assert "greetkit[livekit]" in result.stdout


# -- sharing between processes -----------------------------------------------------------------

def _smaps(pid: int, paths: set[str]) -> dict[str, int]:
    """kB totals of the mappings of ``paths`` in ``pid``'s /proc smaps, plus the rollup."""
    totals = {"Rss": 0, "Pss": 0, "Shared_Clean": 0, "Private_Clean": 0, "Private_Dirty": 0}
    current = False
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:
                current = len(head) >= 6 and head[5] in paths
            elif current and head[0].rstrip(":") in totals:
                totals[head[0].rstrip(":")] += int(head[1])
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        for line in f:
            head = line.split()
            if head[0] in ("Private_Clean:", "Private_Dirty:"):
                totals["rollup_private"] = totals.get("rollup_private", 0) + int(head[1])
    return totals


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_forked_processes_share_the_mapped_audio(built_store: Path) -> None:
    """Four processes forked after load play every clip; the clip mappings stay fully
    shared (0 kB private in each child) and each child adds < 5 MB private memory."""
    bank = load(built_store, verify=True)  # touches every page in the parent
    paths = {str((built_store / rel).resolve()) for rel, _ in bank._files()}
    gc.freeze()  # as LiveKit's forkserver does, so a child's GC does not copy the heap
    children = []
    try:
        for _ in range(4):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: play every clip at every rate, then report
                code = 1
                try:
                    os.close(read_fd)
                    before = _smaps(os.getpid(), paths)["rollup_private"]
                    total = 0
                    for clip in bank.values():
                        for rate in clip.rates:
                            view = memoryview(clip.pcm(rate).data).cast("B")
                            for i in range(0, len(view), 1920):
                                total += len(view[i:i + 1920].tobytes())
                    after = _smaps(os.getpid(), paths)
                    after["added_private"] = after["rollup_private"] - before
                    after["bytes_played"] = total
                    os.write(write_fd, json.dumps(after).encode())
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_fd)
            children.append((pid, read_fd))
        reports = []
        for pid, fd in children:
            with os.fdopen(fd) as f:
                reports.append(json.loads(f.read()))
            assert os.waitpid(pid, 0)[1] == 0
    finally:
        gc.unfreeze()
    for report in reports:
        assert report["bytes_played"] == sum(c.pcm(r).nbytes for c in bank.values()
                                             for r in c.rates)
        assert report["Private_Clean"] + report["Private_Dirty"] == 0, report
        assert report["Rss"] > 0 and report["Pss"] < report["Rss"], report
        assert report["added_private"] < 5 * 1024, report


def test_bank_is_a_read_only_mapping(built_store: Path) -> None:
    """Bank is a Mapping: keys(), len(), `in`, values(); it cannot be assigned to."""
    bank = load(built_store)
    assert isinstance(bank, Bank)
    assert set(bank.keys()) == {k for k, *_ in CLIPS} and len(bank) == len(CLIPS)
    assert "en_default" in bank and "nope" not in bank
    with pytest.raises(TypeError):
        bank["x"] = bank["en_default"]  # type: ignore[index]


# -- preload -----------------------------------------------------------------------------------

PRELOAD_CHILD = """
import json, os, sys
import greetkit.preload as pre
bank = pre.bank
parent = {"clips": sorted(bank), "verified": all(
    f.verdict == "" for c in bank.values() for f in c._files.values())}
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # a job process: the bank is there before anything is loaded or opened
    with open(f"/proc/{os.getpid()}/maps") as f:
        mapped = sum(1 for line in f if "/clips/" in line)
    child = {"mapped_before_use": mapped, "verified": all(
        f.verdict == "" for c in pre.bank.values() for f in c._files.values()),
             "pcm": int(pre.bank["en_default"].samples.astype("int64").sum())}
    os.write(w, json.dumps(child).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.fdopen(r).read())
os.waitpid(pid, 0)
print(json.dumps({"parent": parent, "child": child}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_preload_loads_the_configured_bank_for_forked_jobs(built_store: Path) -> None:
    """Importing greetkit.preload loads GREETKIT_BANK verified; a process forked afterwards
    starts with every clip file already mapped and verified, playing the stored PCM."""
    env = dict(os.environ, GREETKIT_BANK=str(built_store))
    result = subprocess.run([sys.executable, "-c", PRELOAD_CHILD], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["parent"] == {"clips": sorted(k for k, *_ in CLIPS), "verified": True}
    files = len(CLIPS) * len(RATES)
    # the child's PCM is the file's, decoded independently here
    (wav,) = [p for p in (built_store / "clips").glob("en_default.*.wav")
              if ".24000-" not in p.name]
    stored = sf.read(wav, dtype="int16")[0]
    assert out["child"] == {"mapped_before_use": files, "verified": True,
                            "pcm": int(stored.astype("int64").sum())}


def test_preload_without_a_store_gives_an_empty_bank(tmp_path: Path) -> None:
    """A missing GREETKIT_BANK store never breaks the import (the forkserver must start)."""
    env = dict(os.environ, GREETKIT_BANK=str(tmp_path / "missing"))
    result = subprocess.run(
        [sys.executable, "-c", "import greetkit.preload as p; print(len(p.bank), p.bank.problem)"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0 ") and "manifest.json" in result.stdout


SPAWN_CHILD = """
import json, logging, multiprocessing as mp, sys

def job(q):
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import greetkit.preload as p
    hashed = sum(f.verdict is not None for c in p.bank.values() for f in c._files.values())
    q.put({"clips": len(p.bank), "hashed": hashed})

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=job, args=(q,))
    proc.start()
    print(json.dumps(q.get(timeout=60)))
    proc.join(60)
"""


def test_preload_under_spawn_warns_and_does_not_hash_the_whole_bank(built_store: Path,
                                                                    tmp_path: Path) -> None:
    """Imported in a spawned job process (preload_modules cannot have taken effect): one
    warning saying so, and the bank loads with checksums on first play, not all hashed."""
    script = tmp_path / "spawn_job.py"
    script.write_text(SPAWN_CHILD, encoding="utf-8")
    env = dict(os.environ, GREETKIT_BANK=str(built_store))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"clips": len(CLIPS), "hashed": 0}
    warned = [line for line in result.stderr.splitlines() if "preload_modules" in line]
    assert len(warned) == 1 and "did not take effect" in warned[0], result.stderr


# -- the framework-neutral core: select, chunks, per-file health ---------------------------------

def _add_english_morning(store: Path) -> None:
    """Add a 'default_morning' clip in English only (the bye clip's audio)."""
    def add(data: dict[str, Any]) -> None:
        data["clips"].append(dict(clip_entry(data, "en_bye"), key="en_default_morning",
                                  phrase="default_morning"))

    edit_manifest(store, add)


def test_language_outranks_a_variant_of_another_language(store: Path) -> None:
    """zh + a variant that exists only in English plays the Chinese clip, not English."""
    _add_english_morning(store)
    bank = load(store)
    sel = bank.select("default", "zh", time_of_day="morning")
    assert sel.clip is not None and sel.clip.key == "zh_default" and sel.via == "exact"
    en = bank.select("default", "en-US", time_of_day="morning")
    assert en.clip is not None and en.clip.key == "en_default_morning"
    assert en.phrase == "default_morning" and en.via == "base"


@pytest.mark.parametrize("language", [123, 4.5, ["zh"], {"zh": 1}, b"zh", "", "   "])
def test_non_string_language_is_unknown_and_selects_the_default(built_store: Path,
                                                                language: Any) -> None:
    """A language of the wrong type (or blank) is treated as unknown: the default language."""
    sel = load(built_store).select("default", language)
    assert sel.clip is not None and sel.clip.key == "en_default" and sel.via == "default"


@pytest.mark.parametrize(("args", "kwargs"), [
    ((None,), {}), ((42, "en"), {}), (("default", "en"), {"sample_rate": "24000"}),
    (("default", "en"), {"sample_rate": -1}), (("default", "en"), {"time_of_day": 7}),
    (("default", "en"), {"fallback_text": 3}),
])
def test_select_never_raises_on_bad_arguments(built_store: Path, args: tuple[Any, ...],
                                              kwargs: dict[str, Any]) -> None:
    """Bad argument types give a Selection (clip or text), never an exception."""
    sel = load(built_store).select(*args, **kwargs)
    assert sel.clip is not None or sel.text is not None


def test_selection_reports_rate_text_and_liveness(built_store: Path) -> None:
    """A clip selection carries the rate to play and the clip's text; a live one the reason."""
    bank = load(built_store)
    sel = bank.select("default", "zh", sample_rate=24000)
    assert sel.clip is not None and not sel.live
    assert (sel.sample_rate, sel.text, sel.reason) == (24000, "你好！我是小智！", None)
    assert bank.select("default", "zh", sample_rate=16000).sample_rate == 48000
    live = bank.select("thanks", "en")
    assert live.live and live.sample_rate is None and "no clip built" in (live.reason or "")


def test_fallback_text_is_used_only_when_no_text_is_known(tmp_path: Path) -> None:
    """fallback_text fills in when the bank knows no words; the bank's text wins otherwise."""
    empty = load(tmp_path)
    assert empty.select("default", "en", fallback_text="Hello.").text == "Hello."
    assert empty.select("default", "en").text is None


def test_a_bad_24k_file_disables_only_that_file(store: Path, warnings_: Any) -> None:
    """Same-size corruption of en_default's 24 kHz file: 24 kHz requests get the healthy
    48 kHz file, 48 kHz requests keep the clip, one warning naming the rate."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    flip_byte(store / variant_file(data, "en_default")["file"])
    bank = load(store)
    first = bank.select("default", "en", sample_rate=24000)
    assert first.clip is not None and first.sample_rate == 48000
    again = bank.select("default", "en", sample_rate=48000)
    assert again.clip is not None and again.sample_rate == 48000
    assert "en_default" in bank and "en_default" not in bank.unavailable
    assert len(warnings_()) == 1 and "24000 Hz" in warnings_()[0]


def test_every_file_bad_makes_the_selection_live_with_the_reason(store: Path) -> None:
    """With both files of a clip corrupt, the selection is live with the checksum problem."""
    data = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    entry = clip_entry(data, "en_bye")
    for rel in [f["file"] for f in entry["files"].values()]:
        flip_byte(store / rel)
    sel = load(store).select("bye", "en")
    assert sel.live and sel.text == "Goodbye for now." and "checksum" in (sel.reason or "")


@pytest.mark.parametrize(("rate", "step"), [(48000, 960), (24000, 480), (24000, 7)])
def test_chunks_are_sample_exact_windows_of_the_mapped_file(built_store: Path, rate: int,
                                                            step: int) -> None:
    """Clip.chunks: step-sample windows (last shorter) that join to the stored PCM, and are
    views of the mapping (read-only), not copies."""
    clip = load(built_store)["zh_default"]
    chunks = list(clip.chunks(rate, step))
    assert all(len(c) == 2 * step for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 2 * step
    joined = np.frombuffer(b"".join(bytes(c) for c in chunks), dtype="<i2")
    assert np.array_equal(joined, clip.pcm(rate))
    assert chunks[0].readonly


def test_chunks_at_a_missing_rate_or_bad_length_are_clear_errors(built_store: Path) -> None:
    """No file at that rate: AudioError naming the rates; a chunk length below 1: ValueError."""
    from greetkit.errors import AudioError

    clip = load(built_store)["en_default"]
    with pytest.raises(AudioError, match="16000"):
        clip.chunks(16000, 160)
    with pytest.raises(ValueError):
        clip.chunks(48000, 0)


def test_kill_switch_makes_every_selection_live_logged_once(
        built_store: Path, monkeypatch: pytest.MonkeyPatch, warnings_: Any) -> None:
    """GREETKIT_DISABLE=1: every selection is live (via 'disabled') with its text; one log."""
    import greetkit.loader as loader

    bank = load(built_store)
    monkeypatch.setattr(loader, "_disabled_logged", False)
    monkeypatch.setenv("GREETKIT_DISABLE", "1")
    sels = [bank.select("default", "zh"), bank.select("bye", "en")]
    assert [(s.live, s.via, s.text) for s in sels] == [
        (True, "disabled", "你好！我是小智！"), (True, "disabled", "Goodbye for now.")]
    assert len(warnings_()) == 1 and "GREETKIT_DISABLE" in warnings_()[0]
    monkeypatch.setenv("GREETKIT_DISABLE", "0")
    assert bank.select("default", "zh").clip is not None


def test_integrations_use_only_the_public_loader_surface() -> None:
    """The integrations (agents, preload, metrics, and pipecat when present) import no
    private name from another greetkit module and touch no private attribute of the loader's
    objects; the loader imports no integration statically (no loader <-> agents cycle)."""
    import ast

    names = ("agents.py", "preload.py", "metrics.py", "pipecat.py")
    for path in (REPO / "greetkit" / n for n in names):
        if not path.exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("greetkit"):
                private = [a.name for a in node.names
                           if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{path.name} imports {private} from {node.module}"
            if isinstance(node, ast.Attribute) and node.attr in (
                    "_files", "_drop", "_clips", "_entries", "_texts", "spare", "_health"):
                raise AssertionError(f"{path.name}:{node.lineno} uses .{node.attr}")
    loader_src = (REPO / "greetkit" / "loader.py").read_text(encoding="utf-8")
    assert "import greetkit.agents" not in loader_src
    assert "from greetkit.agents" not in loader_src


def test_log_messages_do_not_repeat_the_logger_name(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Records come from the 'greetkit' logger, whose name every handler's format already
    shows, so no message starts with 'greetkit:' again ('greetkit: greetkit: ...')."""
    with caplog.at_level(logging.DEBUG, logger="greetkit"):
        bank = load(tmp_path / "missing")
        bank.select("default", "en")
    records = [r for r in caplog.records if r.name.startswith("greetkit")]
    assert records, "loading a missing store logs"
    assert not [r.getMessage() for r in records if r.getMessage().startswith("greetkit:")]
