"""Nothing lost: crashes, concurrent builds, full/read-only/forbidden disks, corrupt stores
(issue 7; greetkit/store.py, greetkit/build.py, greetkit/commands/, greetkit/loader.py).

Builds run as a user runs them, ``python -m greetkit.cli build`` in a subprocess, with the
real espeak-ng engine. Crash points are made deterministic by running the same command through
tests/faults.py (``python tests/faults.py <point>[:<n>] build ...``), which arms a fault from
outside the package: the build SIGKILLs itself the n-th time it reaches ``render``,
``clip-write`` or ``manifest-write`` (the last two with half of the file in its temp file).

Disk full and read-only are tested on a real tmpfs (``mount -t tmpfs -o size=...``) when this
process may mount (root with CAP_SYS_ADMIN, as in the project's container); elsewhere those
tests skip, and disk-full is still covered deterministically by the ``enospc`` fault of
tests/faults.py, which fails a write with ENOSPC. Permission denied gives the store (or
clips/) to ``nobody`` and runs the build through ``setpriv`` dropping root's DAC capabilities
when the tests run as root (root ignores permission bits otherwise; uid 0 is kept so a checkout
only root can enter still works), plainly otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from greetkit.build import build
from greetkit.store import LOCK_NAME, TMP_PREFIX, Store

SPEC = """\
version: 1
defaults:
  engine: espeak
  sample_rates: [48000, 16000]
languages:
  en: {voices: {espeak: en-us}}
phrases:
  hello:
    en: "{word} hello there."
  thanks:
    en: "{word} thank you for calling."
  wait:
    en: "{word} one moment please."
fallback:
  text: "{word} how can I help?"
"""
NOBODY = 65534
FAULTS = Path(__file__).with_name("faults.py")


def spec(word: str) -> str:
    return SPEC.replace("{word}", word)


def greetkit(*args: str, cwd: Path, fault: str | None = None,
             wrap: Callable[[list[str]], list[str]] | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m greetkit.cli ARGS`` in a subprocess (its command line passed through
    ``wrap`` if given, e.g. to drop privileges); with ``fault``, the same command run by
    tests/faults.py with that fault armed."""
    cmd = [sys.executable, *([str(FAULTS), fault] if fault else ["-m", "greetkit.cli"]), *args]
    if wrap is not None:
        cmd = wrap(cmd)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    """The single 'greetkit: ...' line a failed command printed (and no traceback)."""
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1 and lines[0].startswith("greetkit: "), out.stderr
    return lines[0]


def bank_state(store: Path) -> dict[str, bytes]:
    """manifest.json and every file it names, byte for byte."""
    manifest = json.loads((store / "manifest.json").read_bytes())
    state = {"manifest.json": (store / "manifest.json").read_bytes()}
    for clip in manifest["clips"]:
        for rel in [f["file"] for f in clip["files"].values()]:
            state[rel] = (store / rel).read_bytes()
    return state


def temp_files(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob(f"{TMP_PREFIX}*"))


def assert_intact(store: Path, before: dict[str, bytes]) -> None:
    """The previous bank is exactly as it was, verifies, and loads with every clip."""
    from greetkit.loader import load

    assert bank_state(store) == before
    assert Store(store).verify() == []
    bank = load(store, verify=True)
    assert bank.unavailable == {} and len(bank) == len(json.loads(before["manifest.json"])[
        "clips"])


@pytest.fixture(scope="module")
def built_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose greetings/ holds version 1 of the 'Alpha' bank (built once)."""
    root = tmp_path_factory.mktemp("v1")
    (root / "voices.yaml").write_text(spec("Alpha"))
    build(root / "voices.yaml")
    return root


@pytest.fixture
def project(built_v1: Path, tmp_path: Path) -> Path:
    """A private copy of the version-1 project, its voices.yaml already edited to 'Bravo'
    so that the next build re-renders every clip."""
    root = Path(shutil.copytree(built_v1, tmp_path / "proj", symlinks=True))
    (root / "voices.yaml").write_text(spec("Bravo"))
    return root


# -- crash safety ------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "garbage"), [
    ("render:1", False),          # the first render returned; nothing written yet
    ("render:3", None),           # mid-render: other clips of this build may be on disk
    ("clip-write:2", True),       # half of the second clip file is in its temp file
    ("manifest-write", True),     # every clip written, half of the manifest in its temp
])
def test_sigkill_at_any_point_keeps_the_previous_bank(project: Path, fault: str,
                                                      garbage: bool | None) -> None:
    """A build SIGKILLed mid-render, mid clip write or mid manifest write leaves the previous
    manifest and every clip it names byte-identical, verifiable and loadable; the next build
    takes over the dead build's lock, cleans its temp files and publishes the new bank."""
    store = project / "greetings"
    before = bank_state(store)
    killed = greetkit("build", "-q", cwd=project, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_intact(store, before)
    if garbage is not None:
        assert bool(temp_files(store)) is garbage, temp_files(store)
    assert (store / LOCK_NAME).exists()  # the dead build's lock file stays behind
    # A build killed between keeping manifests/<N>.json and moving manifest.json to it has
    # recorded version N: version numbers are never reused, so the next build is N + 1.
    recorded = [int(p.stem) for p in (store / "manifests").glob("*.json")]
    expected = max([json.loads(before["manifest.json"])["version"], *recorded]) + 1

    again = greetkit("build", "-q", cwd=project)
    assert again.returncode == 0, again.stderr
    assert temp_files(store) == [] and not (store / LOCK_NAME).exists()
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["version"] == expected
    assert all(c["text"].startswith("Bravo") for c in manifest["clips"])
    assert Store(store).verify() == []


# -- concurrency -------------------------------------------------------------------------------

@contextlib.contextmanager
def lock_held_by_child(store: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the store's build lock until it is killed."""
    code = ("import sys, time; from greetkit.store import Store\n"
            "with Store(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(store)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        yield child
    finally:
        child.kill()
        child.wait()


def test_second_build_fails_naming_the_lock_holder(project: Path) -> None:
    """While another process holds the lock, a build exits 1 with one line naming its pid
    and the bank is untouched."""
    store = project / "greetings"
    before = bank_state(store)
    with lock_held_by_child(store) as holder:
        out = greetkit("build", "-q", cwd=project)
        assert out.returncode == 1
        line = one_error_line(out)
        assert f"another build (pid {holder.pid}) is writing this store" in line
        assert "--wait" in line
    assert_intact(store, before)


def test_build_wait_takes_the_lock_when_the_holder_finishes(project: Path) -> None:
    """'build --wait 60' waits for the holder instead of failing, then builds."""
    store = project / "greetings"
    with lock_held_by_child(store) as holder:
        threading.Timer(1.0, holder.kill).start()
        out = greetkit("build", "-q", "--wait", "60", cwd=project)
    assert out.returncode == 0, out.stderr
    assert json.loads((store / "manifest.json").read_text())["clips"][0]["text"].startswith(
        "Bravo")


def test_stale_lock_of_a_dead_process_is_taken_over(project: Path) -> None:
    """A .lock naming a process that no longer exists does not block the next build."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (project / "greetings" / LOCK_NAME).write_text(f"{dead.pid}\n")
    out = greetkit("build", "-q", cwd=project)
    assert out.returncode == 0, out.stderr
    assert not (project / "greetings" / LOCK_NAME).exists()


@pytest.mark.parametrize("wait", [False, True])
def test_two_builds_at_once_never_mix_their_banks(project: Path, wait: bool) -> None:
    """Two builds of different specs into one store, started together: without --wait one
    fails naming the other's pid; with --wait both succeed one after the other. Either way
    the published manifest is entirely one spec's bank and verifies."""
    store = project / "greetings"
    (project / "charlie.yaml").write_text(spec("Charlie"))
    args = ["build", "-q", "--force", "-o", str(store)] + (["--wait", "120"] if wait else [])
    runs = [subprocess.Popen([sys.executable, "-m", "greetkit.cli", *args, "-c", cfg],
                             cwd=project, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for cfg in ("voices.yaml", "charlie.yaml")]
    results = [(p.pid, p.returncode, err) for p in runs
               for _, err in [p.communicate(timeout=180)]]
    ok = [r for r in results if r[1] == 0]
    if wait:
        assert len(ok) == 2, results
    else:
        assert ok, results
        for pid, code, err in results:
            if code != 0:  # the loser names the winner
                other = next(p for p, _, _ in results if p != pid)
                assert code == 1 and f"(pid {other})" in err and "Traceback" not in err
    manifest = json.loads((store / "manifest.json").read_text())
    words = {c["text"].split()[0] for c in manifest["clips"]}
    assert len(words) == 1 and words <= {"Bravo", "Charlie"}, words
    assert manifest["version"] == 1 + len(ok)
    assert Store(store).verify() == []


# -- disk full, read-only, permission denied ---------------------------------------------------

def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = tempfile.mkdtemp()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", probe], check=True)
        return ok
    finally:
        os.rmdir(probe)


CAN_MOUNT = _can_mount()
needs_mount = pytest.mark.skipif(not CAN_MOUNT, reason="needs root with CAP_SYS_ADMIN to mount "
                                 "a tmpfs; disk full is still covered by tests/faults.py's enospc")


@contextlib.contextmanager
def tmpfs(directory: Path, size_kb: int) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(directory)],
                   check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def _usage_kb(store: Path) -> int:
    return sum(-(-p.stat().st_size // 4096) * 4 for p in store.rglob("*") if p.is_file())


@needs_mount
def test_disk_full_on_a_real_tmpfs_is_one_clear_error(project: Path) -> None:
    """A store on a tmpfs with room for the old bank only: the build exits 1 with one line
    saying the disk is full; the old bank is intact and no temp file is left."""
    old = project / "greetings"
    with tmpfs(project / "small", _usage_kb(old) + 48) as mnt:
        shutil.copytree(old, mnt / "greetings")
        store = mnt / "greetings"
        before = bank_state(store)
        out = greetkit("build", "-q", "-o", str(store), cwd=project)
        assert out.returncode == 1
        assert "the disk is full; free space and build again" in one_error_line(out)
        assert_intact(store, before)
        assert temp_files(store) == []


def test_disk_full_injected_is_one_clear_error(project: Path) -> None:
    """ENOSPC at the third write (tests/faults.py's enospc:3, portable): same guarantees."""
    store = project / "greetings"
    before = bank_state(store)
    out = greetkit("build", "-q", cwd=project, fault="enospc:3")
    assert out.returncode == 1
    assert "cannot write: the disk is full; free space and build again" in one_error_line(out)
    assert_intact(store, before)
    assert temp_files(store) == [] and not (store / LOCK_NAME).exists()


@needs_mount
def test_read_only_store_is_one_clear_error(project: Path) -> None:
    """A store on a filesystem remounted read-only: exit 1, one line saying so, bank intact."""
    with tmpfs(project / "ro", 4096) as mnt:
        shutil.copytree(project / "greetings", mnt / "greetings")
        store = mnt / "greetings"
        before = bank_state(store)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        out = greetkit("build", "-q", "-o", str(store), cwd=project)
        assert out.returncode == 1
        assert "read-only; build into a writable directory with --out" in one_error_line(out)
        assert_intact(store, before)


# Root ignores permission bits through its DAC capabilities. Dropping them (and keeping uid 0)
# makes permission bits bind without switching user, so the build still runs from a checkout in a
# directory only root can enter (CI clones into one; ``nobody`` could not even import greetkit).
_DROP_DAC = "-dac_override,-dac_read_search,-fowner,-chown"


def _as_root_without_dac(cmd: list[str]) -> list[str]:
    return ["setpriv", f"--bounding-set={_DROP_DAC}", "--inh-caps=-all", *cmd]


@pytest.mark.parametrize("unwritable", ["store", "clips"])
def test_permission_denied_is_one_clear_error(project: Path, unwritable: str) -> None:
    """Without write permission on the store (fails taking the lock) or only on clips/
    (fails at the first clip write): exit 1, one line naming the path, bank intact."""
    store = project / "greetings"
    before = bank_state(store)
    denied = store if unwritable == "store" else store / "clips"
    wrap = None
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop root's DAC capabilities")
        # owned by nobody, 0755: uid 0 without CAP_DAC_OVERRIDE may read but not write it
        os.chown(denied, NOBODY, -1)
        wrap = _as_root_without_dac
    else:
        os.chmod(denied, 0o555)
    try:
        out = greetkit("build", "-q", cwd=project, wrap=wrap)
    finally:
        if os.geteuid() == 0:
            os.chown(denied, 0, -1)
        os.chmod(denied, 0o755)
    assert out.returncode == 1
    line = one_error_line(out)
    assert "permission denied; check the directory's owner and mode" in line
    # paths are as the user gave them: greetings/ next to ./voices.yaml
    assert line.startswith("greetkit: greetings: cannot lock" if unwritable == "store"
                           else "greetkit: greetings/clips/"), line
    assert_intact(store, before)


# -- corrupt store -----------------------------------------------------------------------------

def _edit_manifest(store: Path, key: str, **changes: str) -> None:
    """Change fields of clip ``key``'s 48 kHz file in the manifest."""
    path = store / "manifest.json"
    data = json.loads(path.read_text())
    for clip in data["clips"]:
        if clip["key"] == key:
            clip["files"]["48000"].update(changes)
    path.write_text(json.dumps(data))


def test_verify_and_load_handle_every_kind_of_damage(built_v1: Path, tmp_path: Path) -> None:
    """Truncated, flipped, missing and symlinked-out clip files: 'greetkit verify' names
    each (exit 1); load() refuses exactly those files, keeps the texts for live TTS and
    serves the rest."""
    from greetkit.loader import load

    store = Path(shutil.copytree(built_v1 / "greetings", tmp_path / "greetings"))
    data = json.loads((store / "manifest.json").read_text())
    files = {c["key"]: c["files"]["48000"]["file"] for c in data["clips"]}
    variants = {c["key"]: next(f["file"] for r, f in c["files"].items() if r != "48000")
                for c in data["clips"]}
    # 48 kHz files: truncate one, flip a byte of another, delete a third.
    p = store / files["en_hello"]
    p.write_bytes(p.read_bytes()[:-1000])
    p = store / files["en_thanks"]
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    p.write_bytes(bytes(raw))
    (store / files["en_wait"]).unlink()
    # The fallback's 16 kHz variant: a symlink to a file outside the store, same bytes.
    outside = tmp_path / "outside.wav"
    shutil.copy(store / variants["fallback"], outside)
    (store / variants["fallback"]).unlink()
    (store / variants["fallback"]).symlink_to(outside)

    out = greetkit("verify", "-o", str(store), cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert any(line.startswith("greetkit: en_hello (48000 Hz") and "truncated" in line
               for line in lines), lines
    assert any(line.startswith("greetkit: en_thanks (48000 Hz") and "checksum mismatch" in line
               for line in lines), lines
    assert any(line.startswith("greetkit: en_wait (48000 Hz") and "missing" in line
               for line in lines), lines
    assert any(line.startswith("greetkit: fallback: ") and "outside the store" in line
               for line in lines), lines
    assert len(lines) == 4

    bank = load(store, verify=True)
    # en_thanks: only its 48 kHz file is corrupt, so only that file is disabled (issue 11).
    assert set(bank.unavailable) == {"en_hello", "en_wait"}
    # The unsafe 16 kHz variant is refused; the fallback's sound 48 kHz file is served.
    assert sorted(bank) == ["en_thanks", "fallback"] and bank["fallback"].rates == (48000,)
    sel = bank.select("thanks", "en", sample_rate=48000)
    assert sel.clip is not None and sel.sample_rate != 48000
    assert sel.text == "Alpha thank you for calling."
    hello = bank.select("hello", "en")
    assert hello.live and hello.text is not None and "truncated" in (hello.reason or "")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "clips/../../x.wav"])
def test_clip_paths_leaving_the_store_are_named_and_refused(built_v1: Path, tmp_path: Path,
                                                            bad: str) -> None:
    """A manifest pointing outside the store is a verify problem and an unavailable clip
    (never opened); the other clips still load and play."""
    from greetkit.loader import load

    store = Path(shutil.copytree(built_v1 / "greetings", tmp_path / "greetings"))
    _edit_manifest(store, "en_hello", file=bad)
    out = greetkit("verify", "-o", str(store), cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    # The manifest's schema refuses the path before any file is opened.
    assert len(lines) == 1 and lines[0].startswith("greetkit: ") and (
        "clips[0] (en_hello): files.48000.file: path" in lines[0]
        and "leaves the store" in lines[0]), lines
    bank = load(store, verify=True)
    assert list(bank.unavailable) == ["en_hello"]
    assert sorted(bank) == ["en_thanks", "en_wait", "fallback"]
    assert bank.select("hello", "en").text == "Alpha hello there."
    assert bank.resolve("thanks", "en") is not None


@pytest.mark.parametrize(("damage", "needle"), [
    (b"{not json", "manifest is not valid JSON"),
    (b'{"format": 99, "version": 1, "clips": []}', "manifest format 99 is not supported"),
    (b"[1, 2]", "manifest is not a JSON object"),
    (b'{"format": 1, "version": "x"}', "manifest is malformed"),
])
def test_broken_manifest_is_named_by_verify_and_loads_empty(built_v1: Path, tmp_path: Path,
                                                            damage: bytes, needle: str) -> None:
    """Bad JSON, a future format or a malformed manifest: verify exits 1 with one line; load
    gives an empty bank that says why (every say() goes to live TTS)."""
    from greetkit.loader import load

    store = Path(shutil.copytree(built_v1 / "greetings", tmp_path / "greetings"))
    (store / "manifest.json").write_bytes(damage)
    out = greetkit("verify", "-o", str(store), cwd=tmp_path)
    assert out.returncode == 1 and needle in one_error_line(out)
    bank = load(store)
    assert len(bank) == 0 and bank.problem is not None and needle in bank.problem


def test_a_build_replaces_a_broken_manifest(built_v1: Path, tmp_path: Path) -> None:
    """After the manifest is corrupted, the next build warns and publishes a sound bank."""
    root = Path(shutil.copytree(built_v1, tmp_path / "p"))
    (root / "greetings" / "manifest.json").write_bytes(b"\x00garbage")
    out = greetkit("build", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "warning: previous manifest ignored" in out.stderr
    assert Store(root / "greetings").verify() == []


def test_over_long_render_fails_that_clip_only(tmp_path: Path) -> None:
    """An engine render longer than MAX_CLIP_SECONDS (here 1000 characters that espeak-ng
    speaks at half speed, about two minutes) fails its clip with the reason before any DSP;
    the other clip builds, and the CLI exits 1 printing 'failed: key: ...'."""
    from greetkit.spec import MAX_CLIP_SECONDS, MAX_TEXT_CHARS

    long = ("Hello there, this is a fairly ordinary sentence for a greeting. " * 20)
    (tmp_path / "voices.yaml").write_text(
        "version: 1\ndefaults: {engine: espeak}\nlanguages:\n  en: {voices: {espeak: en-us}}\n"
        f"phrases:\n  long:\n    en: {{text: '{long[:MAX_TEXT_CHARS - 1]}', rate: '-50%'}}\n"
        "  short:\n    en: Hi there.\n")
    out = greetkit("build", "-q", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("failed: en_long: espeak produced ")
    assert f"a clip may last at most {MAX_CLIP_SECONDS:g} s" in out.stderr
    manifest = json.loads((tmp_path / "greetings" / "manifest.json").read_text())
    assert [c["key"] for c in manifest["clips"]] == ["en_short"]


def test_over_long_recorded_take_is_a_spec_error(write_spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A take longer than MAX_CLIP_SECONDS is refused from its header at validation (exit 2,
    line-numbered), before the build would decode it."""
    from greetkit.spec import MAX_CLIP_SECONDS

    t = np.arange(int((MAX_CLIP_SECONDS + 5) * 8000)) / 8000
    sf.write(tmp_path / "long.wav", 0.2 * np.sin(2 * np.pi * 300 * t), 8000, subtype="PCM_16")
    write_spec("version: 1\ndefaults: {engine: espeak}\nlanguages:\n"
               "  en: {voices: {espeak: en-us}}\nphrases:\n  long:\n"
               "    en: {text: A long take, recording: long.wav}\n")
    out = greetkit("build", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"voices.yaml:7: phrases.long.en.recording: recording 'long.wav' lasts "
        f"{MAX_CLIP_SECONDS + 5:.0f} s; a clip may last at most {MAX_CLIP_SECONDS:g} s, "
        "trim the take")
    assert not (tmp_path / "greetings").exists()


# -- symlinks planted in the store -------------------------------------------------------------

def test_symlinked_lock_never_truncates_its_target(project: Path, tmp_path: Path) -> None:
    """A .lock symlink to another file makes the build fail clearly; the target is intact."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (project / "greetings" / LOCK_NAME).symlink_to(victim)
    out = greetkit("build", "-q", cwd=project)
    assert out.returncode == 1 and "cannot lock" in one_error_line(out)
    assert victim.read_text() == "precious"


def test_planted_temp_symlink_is_not_written_through(project: Path, tmp_path: Path) -> None:
    """A symlink under the manifest's temp name (for this pid) is not followed."""
    from greetkit.errors import StoreError
    from greetkit.store import atomic_write

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    store = project / "greetings"
    (store / f"{TMP_PREFIX}manifest.json.{os.getpid()}").symlink_to(victim)
    before = bank_state(store)
    with pytest.raises(StoreError, match="cannot write"):
        atomic_write(store / "manifest.json", b"{}")
    assert victim.read_text() == "precious"
    assert bank_state(store) == before


def test_symlinked_clips_dir_is_refused_by_build_and_gc(project: Path, tmp_path: Path) -> None:
    """clips/ pointing elsewhere: build and gc refuse with one line; nothing there changes."""
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(project / "greetings" / "clips"), elsewhere)
    (elsewhere / "unrelated.txt").write_text("keep me")
    (project / "greetings" / "clips").symlink_to(elsewhere)
    listing = sorted(p.name for p in elsewhere.iterdir())
    for args in (["build", "-q"], ["gc"]):
        out = greetkit(*args, cwd=project)
        assert out.returncode == 1 and "clips is a symlink" in one_error_line(out), args
    assert sorted(p.name for p in elsewhere.iterdir()) == listing


def test_unsafe_clip_is_spoken_by_live_tts_in_a_real_session(built_v1: Path,
                                                             tmp_path: Path) -> None:
    """End to end: a clip whose manifest path leaves the store is never opened; Bank.say in a
    real livekit AgentSession speaks its manifest text with live TTS (espeak-ng), while a
    sound clip in the same bank plays from its file."""
    import asyncio

    from greetkit.loader import load
    from tests.test_agents import assistant_texts, session_with_capture

    store = Path(shutil.copytree(built_v1 / "greetings", tmp_path / "greetings"))
    _edit_manifest(store, "en_hello", file="../../etc/passwd")
    bank = load(store)
    assert "en_hello" in bank.unavailable and "en_thanks" in bank

    async def main() -> None:
        async with session_with_capture(48000) as (session, out):
            for phrase in ("hello", "thanks"):
                handle = bank.say(session, phrase, language="en")
                assert handle is not None
                await asyncio.wait_for(handle.wait_for_playout(), 30)
            assert assistant_texts(session) == ["Alpha hello there.",
                                                "Alpha thank you for calling."]
            live, clip = out.segments[0], out.segments[1]
            assert sum(f.samples_per_channel for f in live) > 0.3 * 48000  # real speech
            played = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in clip])
            assert np.array_equal(played, bank["en_thanks"].pcm())

    asyncio.run(main())
