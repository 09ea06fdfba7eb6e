"""Worker processes for the build's DSP, the CPU-heavy half of the render stage.

Engine calls, the draft fallback and every store write stay in the build's own process (one
event loop, one lock, one place where files appear); only :func:`greetkit.render.master`
(pure: engine audio in, int16 per rate out) runs in the pool, so different clips are mastered
on different cores. Workers ignore Ctrl-C (the build stops them and says "interrupted"
once), and a worker that dies ends the build with one line instead of a hang.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor


def default_jobs() -> int:
    """Clips mastered at once by default: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity mask
        return max(1, os.cpu_count() or 1)


# glibc mallopt parameters (malloc.h) and the values the DSP wants: arrays under 32 MiB (a
# 60 s clip's float64 samples at 48 kHz are 22 MiB) come from the heap instead of fresh
# mmap pages, and up to 128 MiB freed is kept for the next clip instead of returned.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_ARRAYS_UNDER = 32 << 20
_KEEP_FREED = 128 << 20


def keep_freed_memory() -> bool:
    """Make this process's allocator reuse freed memory for the DSP's large arrays.

    The chain makes and drops a few dozen clip-length float64 arrays per clip. With glibc's
    defaults each comes from new pages the kernel zeroes and maps on first touch, then goes
    back on free: about a third of the DSP's CPU went to those page faults
    (``bench/build_speed.py`` shows the chain both ways). Called in the build's mastering
    process only, never by the loader. Returns whether the C library took the setting: False
    where it has no ``mallopt`` (macOS, Windows) or ignores it, and nothing changes there.
    """
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_ARRAYS_UNDER)
                and mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED))


def _start_worker(parent: int) -> None:
    # Ctrl-C goes to the whole process group; the build handles it for everyone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    keep_freed_memory()
    # Spawned workers load numpy, scipy and soxr while the build renders the first clips.
    import soxr  # noqa: F401

    import greetkit.dsp  # noqa: F401


def _die_with(parent: int) -> None:
    """End this worker when the build process ends, however it ends: a build killed with
    SIGKILL cannot stop its pool, and orphaned workers would hold its output pipes open
    (whoever waits for the build's output would wait forever)."""
    try:
        import ctypes

        # Linux: the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG = 1).
        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0:
            raise OSError("prctl failed")
    except (OSError, AttributeError):  # elsewhere: look every half second
        threading.Thread(target=_watch, args=(parent,), daemon=True,
                         name="greetkit-parent-watch").start()
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _ready() -> None:
    """A no-op task: submitting it starts the workers."""


def dsp_executor(workers: int) -> Executor:
    """An executor for mastering: ``workers`` processes, or one thread when ``workers``
    is 1 (no process start-up cost for a one-clip or ``--jobs 1`` build).

    Workers are forked where the platform allows it and this process runs no other thread
    yet (the DSP modules are imported once, here, and shared copy-on-write: importing scipy
    costs about a CPU second per process), and spawned otherwise (a fork beside running
    threads can inherit a held lock). Call it before the renders start their threads.
    Whichever process masters gets :func:`keep_freed_memory`.
    """
    if workers <= 1:
        keep_freed_memory()  # this process masters
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="greetkit-dsp")
    fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    if fork:
        import soxr  # noqa: F401

        import greetkit.dsp  # noqa: F401
    context = multiprocessing.get_context("fork" if fork else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                               initargs=(os.getpid(),), mp_context=context)
    pool.submit(_ready)  # a forking pool starts every worker now, while no thread runs
    return pool
