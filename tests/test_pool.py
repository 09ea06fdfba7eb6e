"""The parallel build (greetkit/pool.py, build.py's DSP pool), with real espeak and processes.

Mastering runs in worker processes; the bank must not depend on it, and the build must stay
well behaved when a worker dies, on Ctrl-C, and when the build itself is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greetkit.build import build
from greetkit.pool import default_jobs, keep_freed_memory

CLIPS = 12


def write_spec(root: Path, count: int = CLIPS) -> Path:
    text = "Hello number {}, welcome back. How can I help you today?"
    phrases = "\n".join(f"  p{i}:\n    en: {json.dumps(text.format(i))}" for i in range(count))
    path = root / "voices.yaml"
    path.write_text("version: 1\ndefaults:\n  engine: espeak\n  language: en\n"
                    "  sample_rates: [48000, 24000]\nlanguages:\n  en: {voices: {espeak: en-us}}\n"
                    f"phrases:\n{phrases}\n", encoding="utf-8")
    return path


def bank(root: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    manifest.pop("built_at")
    files = {p.name: p.read_bytes() for p in (root / "clips").iterdir()}
    return manifest, files


def greetkit_build(spec: Path, *args: str) -> subprocess.Popen[str]:
    """``greetkit build`` in its own session (so a test can signal its process group)."""
    return subprocess.Popen([sys.executable, "-m", "greetkit.cli", "build", "-c", str(spec),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def workers_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (the DSP workers), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != "Z" and b"resource_tracker" not in cmdline:
            found.append(int(entry))
    return found


def wait_for_workers(proc: subprocess.Popen[str], count: int = 2) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = workers_of(proc.pid)
        if len(found) >= count:
            return found
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the build started no DSP workers")


def alive(pids: list[int]) -> list[int]:
    live = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.append(pid)
    return live


linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_default_jobs_is_every_usable_core() -> None:
    """The default is the number of cores this process may run on."""
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_jobs() == expected


#: Makes and drops four clip-sized arrays at once (3 MB each, a 7.8 s clip at 48 kHz), as a DSP
#: stage does, 50 times, touching every page; prints the page faults that took, before and
#: after keep_freed_memory().
_REUSE = """
import resource, numpy as np
from greetkit.pool import keep_freed_memory
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        arrays = [np.ones(375_000) for _ in range(4)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
default = faults()
took = keep_freed_memory()
arrays = [np.ones(375_000) for _ in range(4)]  # the first ones after it still map pages
del arrays
print(default, took, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr(
    "CS_GNU_LIBC_VERSION") is None, reason="mallopt is glibc's")
def test_keep_freed_memory_reuses_pages_for_clip_sized_arrays() -> None:
    """With glibc's defaults every clip-sized array is mapped afresh (a page fault per 4 KiB
    page); after keep_freed_memory() the freed pages are reused."""
    out = subprocess.run([sys.executable, "-c", _REUSE], capture_output=True, text=True,
                         check=True, timeout=120)
    default, took, tuned = out.stdout.split()
    assert took == "True"
    pages = 4 * 375_000 * 8 // 4096  # one round's worth
    assert int(default) >= 40 * pages  # nearly every round faulted in its pages afresh
    assert int(tuned) < pages  # not even one round's worth over all 50


def test_keep_freed_memory_is_a_no_op_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the C library has no mallopt, nothing is changed and it says so."""
    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda _name: object())
    assert keep_freed_memory() is False


def test_parallel_build_equals_serial_build(tmp_path: Path) -> None:
    """Two workers and one produce the same manifest (built_at aside) and the same bytes,
    clips listed in voices.yaml order whichever finished first."""
    spec = write_spec(tmp_path)
    serial = build(spec, tmp_path / "serial", jobs=1)
    parallel = build(spec, tmp_path / "parallel", jobs=2)
    assert serial.rendered == parallel.rendered == [f"en_p{i}" for i in range(CLIPS)]
    assert bank(tmp_path / "serial") == bank(tmp_path / "parallel")


def test_jobs_below_one_is_refused(tmp_path: Path) -> None:
    """jobs=0 is a caller's mistake, said before anything is built."""
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        build(write_spec(tmp_path), tmp_path / "out", jobs=0)
    assert not (tmp_path / "out").exists()


def test_cli_prints_progress_per_clip_with_workers(tmp_path: Path) -> None:
    """`greetkit build --jobs 2` still prints one progress line per clip and the summary."""
    proc = greetkit_build(write_spec(tmp_path), "--jobs", "2")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert sorted(line.split("] ")[1] for line in err.splitlines() if line.startswith("[")) \
        == sorted(f"en_p{i}: rendered" for i in range(CLIPS))
    assert f"{CLIPS} rendered, 0 reused" in out


@linux_only
def test_a_dead_worker_ends_the_build_with_one_line(tmp_path: Path) -> None:
    """A worker killed mid-build (the OOM killer, say): exit 1, one line naming what happened
    and what to do, no traceback, no hang, nothing published."""
    proc = greetkit_build(write_spec(tmp_path), "--jobs", "2")
    os.kill(wait_for_workers(proc)[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "greetkit: a DSP worker process died" in err and "--jobs 1" in err
    assert "Traceback" not in err
    assert not (tmp_path / "greetings" / "manifest.json").exists()


@linux_only
def test_ctrl_c_stops_the_build_and_its_workers(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it): exit 130, said
    once, no traceback from the build or any worker, and no worker left running."""
    proc = greetkit_build(write_spec(tmp_path), "--jobs", "2")
    workers = wait_for_workers(proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] in ("aborted", "interrupted")
    deadline = time.monotonic() + 10
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(workers) == []


@linux_only
def test_a_killed_build_takes_its_workers_with_it(tmp_path: Path) -> None:
    """SIGKILL of the build (it cannot stop its pool): the workers end too, so nothing
    holds the build's output open and whoever waits for it is not left waiting."""
    proc = greetkit_build(write_spec(tmp_path), "--jobs", "2")
    workers = wait_for_workers(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)  # returns only once every holder of the pipes is gone
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(workers) == []
