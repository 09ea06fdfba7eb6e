"""The store: atomic immutable writes, verify, lock, gc (greetkit/store.py)."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from greetkit.errors import StoreError, StoreLocked
from greetkit.manifest import ClipEntry, Manifest
from greetkit.store import Store, StorePaths, file_problem


def ramp(n: int = 4800) -> np.ndarray:
    return (np.arange(n) % 2000 - 1000).astype(np.int16)


def entry(store: Store, key: str = "en_default") -> ClipEntry:
    stored = store.write_clip(f"{key}.abc", ramp(), 48000)
    return ClipEntry(key=key, phrase="default", language="en", text="Hi", engine="espeak",
                     voice="en-us", preferred_engine="espeak", draft=False, content_key="abc",
                     channels=1, duration=0.1,
                     files={48000: stored.record(lufs=-18.0, true_peak_db=-2.0)},
                     target_lufs=-18.0, true_peak_ceiling_db=-1.5, gain_db=0.0, limiter_db=0.0)


def manifest(*clips: ClipEntry, version: int = 1) -> Manifest:
    return Manifest(version=version, built_at="now", generator="test", default_language="en",
                    languages=("en",), phrases=("default",), clips=clips)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "greetings")
    s.prepare()
    return s


def test_written_clip_round_trips_exactly(store: Store) -> None:
    """The stored WAV decodes to the same int16 samples, and data_offset points at them."""
    e = entry(store)
    data = (store.root / e.base.file).read_bytes()
    pcm = np.frombuffer(data, dtype="<i2", offset=e.base.data_offset, count=e.base.samples)
    assert np.array_equal(pcm, ramp())
    decoded, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 48000 and np.array_equal(decoded, ramp())
    assert sf.info(io.BytesIO(data)).subtype == "PCM_16"


def test_file_name_carries_its_checksum_so_it_is_never_rewritten(store: Store) -> None:
    """Different bytes under the same stem get a different name; same bytes reuse the file."""
    a = store.write_clip("k.abc", ramp(), 48000)
    inode = os.stat(store.root / a.file).st_ino
    b = store.write_clip("k.abc", ramp(), 48000)
    c = store.write_clip("k.abc", ramp()[::-1].copy(), 48000)
    assert a == b and os.stat(store.root / b.file).st_ino == inode
    assert c.file != a.file and a.sha256[:12] in a.file


def test_verify_names_flipped_truncated_and_missing_files(store: Store) -> None:
    """Each kind of damage is reported against its clip key."""
    entries = [entry(store, k) for k in ("a_x", "b_x", "c_x")]
    store.publish(manifest(*entries))
    assert store.verify() == []
    pa = store.root / entries[0].base.file
    data = bytearray(pa.read_bytes())
    data[100] ^= 0xFF
    pa.write_bytes(bytes(data))
    pb = store.root / entries[1].base.file
    pb.write_bytes(pb.read_bytes()[:-10])
    (store.root / entries[2].base.file).unlink()
    problems = store.verify()
    assert len(problems) == 3
    assert problems[0].startswith("a_x (48000 Hz") and "checksum mismatch" in problems[0]
    assert problems[1].startswith("b_x (48000 Hz") and "truncated" in problems[1]
    assert problems[2].startswith("c_x (48000 Hz") and "missing" in problems[2]


def test_paths_leaving_the_store_are_refused(store: Store, tmp_path: Path) -> None:
    """'..', absolute paths and symlinks out of the store never resolve."""
    for bad in ("../../etc/passwd", "/etc/passwd"):
        with pytest.raises(StoreError, match="leaves the store"):
            store.path_of(bad)
    (tmp_path / "outside.wav").write_bytes(b"x")
    (store.clips / "link.wav").symlink_to(tmp_path / "outside.wav")
    with pytest.raises(StoreError, match="outside the store"):
        store.path_of("clips/link.wav")


def test_publish_is_atomic_and_leaves_no_temp_files(store: Store) -> None:
    """manifest.json is replaced whole; no temp file remains."""
    store.publish(manifest(entry(store), version=1))
    store.publish(manifest(entry(store), version=2))
    got = store.manifest()
    assert got is not None and got.version == 2
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".tmp-")] == []


def test_lock_excludes_a_second_holder_and_takes_over_stale_locks(store: Store) -> None:
    """A live holder blocks with its pid named; a dead holder's lock is taken over."""
    with store.lock(), pytest.raises(StoreLocked, match=f"pid {os.getpid()}"), store.lock():
        pass
    (store.root / ".lock").write_text("999999999\n")  # no such process
    with store.lock():
        assert (store.root / ".lock").read_text().strip() == str(os.getpid())
    assert not (store.root / ".lock").exists()


def test_a_build_refused_as_the_holder_starts_still_names_it(store: Store) -> None:
    """The holder writes its pid just after its flock succeeds. A build refused in that
    moment, when the file still holds a dead build's pid, looks again and names the live
    holder (CI once saw "another process" here)."""
    import fcntl
    import threading
    import time

    store.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(store.root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"999999999\n")  # a dead build's pid, not yet replaced

    def write_own_pid() -> None:
        time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    writer = threading.Thread(target=write_own_pid)
    writer.start()
    try:
        with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"), store.lock():
            pass
    finally:
        writer.join()
        os.close(fd)


def test_gc_removes_only_unreferenced_files(store: Store) -> None:
    """Files of older versions go; the current manifest's stay."""
    old = store.write_clip("old.abc", ramp()[::-1].copy(), 48000)
    current = entry(store)
    store.publish(manifest(current))
    removed = store.gc()
    assert [p.name for p in removed] == [Path(old.file).name]
    assert (store.root / current.base.file).exists() and store.verify() == []


def test_path_of_refuses_paths_leaving_the_store(store: Store, tmp_path: Path) -> None:
    """'..', absolute paths and a symlinked file or directory leading out are refused by
    the one containment check; a path inside is returned under the store."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.wav").write_bytes(b"x")
    store.prepare()
    (store.clips / "in.wav").write_bytes(b"x")
    (store.clips / "link.wav").symlink_to(outside / "x.wav")
    (store.root / "linked").symlink_to(outside, target_is_directory=True)
    assert store.path_of("clips/in.wav") == store.clips / "in.wav"
    for rel, problem in [("clips/../../x.wav", "leaves the store"), ("/etc/passwd", "absolute"),
                         ("clips/link.wav", "outside the store"),
                         ("linked/x.wav", "outside the store")]:
        with pytest.raises(StoreError, match=problem):
            store.path_of(rel)


def test_store_paths_locate_leaves_a_symlinked_file_to_o_nofollow(store: Store,
                                                                  tmp_path: Path) -> None:
    """locate() checks the text and the directory only: the loader opens the file itself
    with O_NOFOLLOW, so a symlinked file gets there (and is refused when opened)."""
    store.prepare()
    (store.clips / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    paths = StorePaths(store.root)
    assert paths.locate("clips/link.wav") == os.path.join(store.root, "clips/link.wav")
    with pytest.raises(StoreError, match="outside the store"):
        paths.resolve("clips/link.wav")


def test_file_problem_names_size_checksum_and_layout(store: Store) -> None:
    """A stored file is checked against its record: size first, then sha256, then the WAV
    header; a sound file has no problem."""
    stored = store.write_clip("a.abc", ramp(), 48000)
    data = (store.root / stored.file).read_bytes()
    def problem(data: bytes, rate: int = 48000) -> str | None:
        record = dataclasses.replace(stored.record(lufs=-18.0, true_peak_db=-2.0),
                                     sample_rate=rate)
        return file_problem(data, record)

    assert problem(data) is None
    assert "truncated" in (problem(data[:-2]) or "")
    assert problem(data[:-1] + bytes([data[-1] ^ 1])) == "checksum mismatch (corrupted)"
    assert problem(data, 24000) == "bad WAV (48000 Hz in the header, manifest says 24000)"


def test_manifest_of_unknown_format_or_bad_json_is_a_store_error(store: Store) -> None:
    """A future format or broken JSON is refused with a fix in the message."""
    store.manifest_path.write_text('{"format": 99}')
    with pytest.raises(StoreError, match="format 99 is not supported"):
        store.manifest()
    store.manifest_path.write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        store.manifest()
