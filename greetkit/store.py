"""The greetings store: immutable clip files plus a manifest published last.

Layout of a store directory (``greetings/`` by default)::

    manifest.json                      the current version; replaced atomically, written last
    manifests/<version>.json           every published version, immutable (rollback, pinning)
    clips/<key>.<ck>-<sha>.wav         48 kHz clip; <ck> = content key, <sha> = sha256 of bytes
    clips/<key>.<ck>.<rate>-<sha>.wav  the same clip at another output rate
    .lock                              held by a running build (pid inside)

A clip file is never rewritten: its name carries a prefix of its own checksum, so different
bytes always get a different name, and a worker that has a file mapped keeps valid data.
Every write goes to a temporary file in the same directory, is flushed to disk, then renamed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from greetkit.errors import AudioError, StoreError, StoreLocked
from greetkit.manifest import (
    MANIFEST_NAME,
    MANIFESTS_DIR,
    ClipEntry,
    ClipFile,
    Manifest,
    path_problem,
    read_manifest,
    version_name,
)
from greetkit.wav import check_layout, encode, read_header

CLIPS_DIR = "clips"
LOCK_NAME = ".lock"
TMP_PREFIX = ".tmp-"
# Not every OS has it (Windows); there a planted symlink is not a concern of ours.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

@dataclass(frozen=True)
class StoredFile:
    """Where a clip's bytes landed and what identifies them."""

    file: str
    sha256: str
    bytes: int
    data_offset: int
    samples: int
    sample_rate: int

    def record(self, *, lufs: float, true_peak_db: float) -> ClipFile:
        """The manifest's record of this file, with its measured loudness."""
        return ClipFile(sample_rate=self.sample_rate, file=self.file, sha256=self.sha256,
                        bytes=self.bytes, data_offset=self.data_offset, samples=self.samples,
                        lufs=lufs, true_peak_db=true_peak_db)


def file_problem(data: bytes, record: ClipFile) -> str | None:
    """What is wrong with a stored clip file's ``data`` against its manifest ``record`` (size,
    checksum, then WAV layout), or None. The one check ``verify``, ``preview`` and the
    report make before trusting a file's bytes (the loader makes it lazily, see
    :mod:`greetkit.loader`)."""
    if len(data) != record.bytes:
        return f"{len(data)} bytes, manifest says {record.bytes} (truncated?)"
    if hashlib.sha256(data).hexdigest() != record.sha256:
        return "checksum mismatch (corrupted)"
    try:
        check_layout(data, record.bytes, sample_rate=record.sample_rate,
                     data_offset=record.data_offset, samples=record.samples)
    except AudioError as exc:
        return f"bad WAV ({exc})"
    return None


class StorePaths:
    """The one containment check: manifest paths mapped to files inside a store directory.

    A path is refused when its text leaves the store (:func:`~greetkit.manifest.path_problem`)
    or when a symlinked directory on the way leads out. Directory verdicts are cached (every
    clip lives in ``clips/``), so mapping 400 files resolves one directory; build one per
    load or command, not per process, so a directory swapped later is seen.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = os.fspath(root)
        self.real_root = os.path.realpath(self.root)
        self._dirs: dict[str, bool] = {}

    def _inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root + os.sep)

    def locate(self, rel: str) -> str:
        """``root/rel`` as a string, after checking the path and its directory stay inside.
        The file itself may still be a symlink: open it with ``O_NOFOLLOW`` or use
        :meth:`resolve`. Raises :class:`StoreError`."""
        problem = path_problem(rel)
        if problem is not None:
            raise StoreError(f"clip path {rel[:80]!r} {problem}; rebuild the bank")
        directory = rel.rpartition("/")[0] or "."
        inside = self._dirs.get(directory)
        if inside is None:
            real = os.path.realpath(os.path.join(self.root, directory))
            inside = self._dirs[directory] = self._inside(real)
        if not inside:
            raise StoreError(f"clip path {rel!r} resolves outside the store (symlink?)")
        return os.path.join(self.root, rel)  # str, not Path: 400 files per bank add up

    def resolve(self, rel: str) -> Path:
        """:meth:`locate`, and a file that is a symlink must stay inside too (for readers
        that follow links)."""
        path = self.locate(rel)
        if os.path.islink(path) and not self._inside(os.path.realpath(path)):
            raise StoreError(f"clip path {rel!r} resolves outside the store (symlink?)")
        return Path(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows it
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + ``os.replace``."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        # O_NOFOLLOW: a symlink planted under the temp name must not redirect the write.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o644)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _store_error(path, "cannot write", exc) from exc
    _fsync_dir(path.parent)


def _store_error(path: Path, what: str, exc: OSError) -> StoreError:
    hints = {
        errno.ENOSPC: "the disk is full; free space and build again",
        errno.EACCES: "permission denied; check the directory's owner and mode",
        errno.EPERM: "permission denied; check the directory's owner and mode",
        errno.EROFS: "the filesystem is read-only; build into a writable directory with --out",
        errno.EDQUOT: "disk quota exceeded; free space and build again",
    }
    hint = hints.get(exc.errno or 0, exc.strerror or str(exc))
    err = StoreError(f"{path}: {what}: {hint}")
    err.errno = exc.errno
    return err


def _acquire_lock(root: Path, wait: float) -> int:
    """The open, flock'ed ``root/.lock`` (see :meth:`Store.lock`): waits up to ``wait``
    seconds for another holder, else raises :class:`StoreLocked` naming it."""
    import fcntl  # POSIX only: building needs it, reading a store (verify, list) does not
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _store_error(root, "cannot create", exc) from exc
    path = root / LOCK_NAME
    deadline = time.monotonic() + wait
    while True:
        try:
            # O_NOFOLLOW: a .lock symlinked to another file must not get it truncated.
            fd = os.open(path, os.O_CREAT | os.O_RDWR | _NOFOLLOW, 0o644)
        except OSError as exc:
            raise _store_error(root, "cannot lock", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            holder = _holder_pid(path)
            who = f"pid {holder}" if holder else "another process"
            raise StoreLocked(
                f"{root}: another build ({who}) is writing this store; wait for it "
                "(build --wait SECONDS) or stop that process"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise _store_error(root, "cannot lock", exc) from exc
        # The previous holder unlinks the file before releasing it: only a lock on the
        # file that is at ``path`` right now counts.
        try:
            st, now = os.fstat(fd), os.stat(path)
            current = (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)


class Store:
    """A store directory: write clips, publish manifests, verify and collect garbage."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.clips = self.root / CLIPS_DIR
        self.manifest_path = self.root / MANIFEST_NAME

    # -- reading --------------------------------------------------------------------------
    def manifest(self, version: int | None = None) -> Manifest | None:
        """The current manifest, or the published ``version`` of it; None when absent."""
        return read_manifest(self.root, version=version)

    def versions(self) -> list[int]:
        """Every version kept in ``manifests/``, oldest first."""
        directory = self.root / MANIFESTS_DIR
        if not directory.is_dir():
            return []
        found = []
        for p in directory.glob("*.json"):
            if p.stem.isdigit():
                found.append(int(p.stem))
        return sorted(found)

    def path_of(self, relative: str) -> Path:
        """The path of a manifest ``file`` entry; :class:`StoreError` for a path leaving the
        store, by its text or through a symlink (see :class:`StorePaths`)."""
        return StorePaths(self.root).resolve(relative)

    # -- writing --------------------------------------------------------------------------
    def prepare(self) -> None:
        self._refuse_symlinked_clips()
        try:
            self.clips.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _store_error(self.clips, "cannot create", exc) from exc

    def write_clip(self, stem: str, pcm: npt.NDArray[np.int16], sample_rate: int) -> StoredFile:
        """Store one clip's PCM as an immutable WAV named after ``stem`` and its checksum."""
        data = encode(pcm, sample_rate)
        digest = hashlib.sha256(data).hexdigest()
        offset = read_header(data).data_offset
        name = f"{stem}-{digest[:12]}.wav"
        path = self.clips / name
        # Same name means same bytes (the name holds the checksum): never rewrite a file a
        # worker may have mapped.
        if not (path.is_file() and path.stat().st_size == len(data)):
            atomic_write(path, data)
        return StoredFile(f"{CLIPS_DIR}/{name}", digest, len(data), offset, int(pcm.shape[0]),
                          sample_rate)

    def publish(self, manifest: Manifest) -> Manifest:
        """Keep ``manifest`` as ``manifests/<version>.json``, then replace manifest.json with
        it atomically: readers see the old bank or the new, never a mix.

        A version number already taken (after a rollback the current version is not the
        newest) is never overwritten: the manifest is renumbered past the newest. Returns
        the manifest as published.
        """
        taken = self.versions()
        if manifest.version in taken or (taken and manifest.version < taken[-1]):
            manifest = dataclasses.replace(manifest, version=taken[-1] + 1)
        data = manifest.dumps().encode("utf-8")
        directory = self.root / MANIFESTS_DIR
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _store_error(directory, "cannot create", exc) from exc
        atomic_write(directory / version_name(manifest.version), data)
        atomic_write(self.manifest_path, data)
        return manifest

    def install(self, manifest: Manifest, raw: bytes) -> None:
        """Publish a version made elsewhere (a pull) under its own number: ``raw`` becomes
        ``manifests/<version>.json`` and then manifest.json. Refuses to replace a different
        manifest already kept under that number."""
        directory = self.root / MANIFESTS_DIR
        path = directory / version_name(manifest.version)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            kept = path.read_bytes() if path.is_file() else None
        except OSError as exc:
            raise _store_error(directory, "cannot create", exc) from exc
        if kept is not None and kept != raw:
            raise StoreError(f"{path}: a different version {manifest.version} is kept here "
                             "(this store came from elsewhere); pull into an empty directory")
        if kept is None:
            atomic_write(path, raw)
        atomic_write(self.manifest_path, raw)

    def rollback(self, version: int) -> Manifest:
        """Make published ``version`` current again (deleting nothing). Refuses a version
        whose clips are not all present and intact, so the current bank stays playable."""
        manifest = self.manifest(version)
        if manifest is None:
            have = ", ".join(map(str, self.versions())) or "none"
            raise StoreError(f"{self.root}: no version {version} (kept versions: {have})")
        problems = self.verify(manifest)
        if problems:
            raise StoreError(f"{self.root}: version {version} cannot be restored: "
                             f"{problems[0]}" + (f" (+{len(problems) - 1} more)"
                                                 if len(problems) > 1 else ""))
        atomic_write(self.manifest_path, manifest.dumps().encode("utf-8"))
        return manifest

    @contextlib.contextmanager
    def lock(self, *, wait: float = 0.0) -> Iterator[None]:
        """Hold the store's build lock, waiting up to ``wait`` seconds for another build.

        The lock is an ``flock`` on ``.lock`` (which holds the owner's pid for messages), so
        the kernel releases it when its owner dies, even by SIGKILL: a stale lock file left by
        a dead build is simply taken over. (An O_EXCL file alone raced here: two builds could
        both judge a dead pid stale, and the second would delete the first one's fresh lock.)
        Raises :class:`StoreLocked` naming the holder if another live build has it.
        """
        fd = _acquire_lock(self.root, wait)
        path = self.root / LOCK_NAME
        try:
            os.ftruncate(fd, 0)  # drop a dead build's pid
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)

    def _refuse_symlinked_clips(self) -> None:
        # Builds write and gc deletes in clips/; a symlink there would aim both elsewhere.
        if self.clips.is_symlink():
            raise StoreError(f"{self.clips} is a symlink; the store's clips must live inside "
                             "it, replace the link with a directory")

    # -- checking ------------------------------------------------------------------------
    def check_entry(self, entry: ClipEntry) -> list[str]:
        """Problems with one clip's files (missing, wrong size, checksum, bad header)."""
        problems = []
        paths = StorePaths(self.root)
        for rate, f in entry.files.items():
            label = f"{entry.key} ({rate} Hz, {f.file})"
            try:
                data = paths.resolve(f.file).read_bytes()
            except StoreError as exc:
                problems.append(f"{entry.key}: {exc}")
                continue
            except FileNotFoundError:
                problems.append(f"{label}: file is missing; run 'greetkit build'")
                continue
            except OSError as exc:
                problems.append(f"{label}: cannot read ({exc.strerror})")
                continue
            problem = file_problem(data, f)
            if problem is not None:
                problems.append(f"{label}: {problem}; run 'greetkit build --force'")
        return problems

    def verify(self, manifest: Manifest | None = None) -> list[str]:
        """Every problem in the store, one line each (empty when the bank is sound)."""
        manifest = manifest or self.manifest()
        if manifest is None:
            return [f"{self.manifest_path}: no manifest; run 'greetkit build'"]
        problems = [r.problem for r in manifest.refused]  # failed the manifest's schema
        for entry in manifest.clips:
            problems += self.check_entry(entry)
        return problems

    def referenced(self, manifest: Manifest | None) -> set[str]:
        """File names (in ``clips/``) the manifest names.

        Raises :class:`StoreError` when the manifest refused clips: which files those use
        cannot be trusted, so nothing may be deleted against it.
        """
        if manifest is None:
            return set()
        if manifest.refused:
            raise StoreError(f"{manifest.refused[0].problem} (and {len(manifest.refused) - 1} "
                             "more); gc deletes nothing while the manifest refuses clips")
        names: set[str] = set()
        for c in manifest.clips:
            names.update(Path(f.file).name for f in c.files.values())
        return names

    def clean_temp(self) -> int:
        """Remove temporary files left by a build that died; returns how many."""
        removed = 0
        for directory in (self.root, self.clips, self.root / MANIFESTS_DIR):
            if not directory.is_dir():
                continue
            for p in directory.glob(f"{TMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed += 1
        return removed

    def gc(self, *, dry_run: bool = False, keep: int = 1,
           pin: int | None = None) -> list[Path]:
        """Delete clip files that neither the current manifest, the newest ``keep`` versions
        nor the ``pin``ned version name. Returns what was (or would be) removed. Dropped
        versions' manifests stay as history (a few kB; rollback refuses them once their
        clips are gone). Call it when no worker still uses a dropped version.
        """
        if keep < 1:
            raise StoreError(f"gc --keep must be at least 1, got {keep}")
        self._refuse_symlinked_clips()
        current = self.manifest()
        versions = self.versions()
        kept = set(versions[-keep:])
        if current is not None:
            kept.add(current.version)
        if pin is not None:
            if pin not in versions:
                raise StoreError(f"{self.root}: no version {pin} to keep (kept versions: "
                                 f"{', '.join(map(str, versions)) or 'none'})")
            kept.add(pin)
        names = self.referenced(current)
        for v in kept:
            names |= self.referenced(self.manifest(v) if v in versions else None)
        doomed = []
        if self.clips.is_dir():
            doomed = [p for p in sorted(self.clips.iterdir())
                      if p.is_file() and p.name not in names]
        if not dry_run:
            for p in doomed:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return doomed


def _holder_pid(path: Path) -> int | None:
    """The pid in a held lock file. The holder writes it just after its flock succeeds, so
    a build that lost the race by a hair can find the file still empty, or still holding a
    dead build's pid: look again for up to half a second before saying "another process"."""
    for _ in range(10):
        pid = _read_pid(path)
        if pid is not None and _alive(pid):
            return pid
        time.sleep(0.05)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
