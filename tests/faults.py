"""Run a greetkit command that dies at a named point (crash-safety tests, tests/test_safety.py).

    python tests/faults.py POINT[:N] ARGS...

runs ``greetkit ARGS`` in this process, exactly as ``python -m greetkit.cli ARGS`` does, with a
fault armed from outside the package: nothing in greetkit knows about it. The process SIGKILLs
itself the N-th time (default: the first) it reaches POINT:

``render``
    an engine's ``render()`` has just returned audio (no DSP or write for that clip yet);
``clip-write``
    a store file other than manifest.json (a clip, or ``manifests/<N>.json``) sits in its temp
    file with half of its bytes, not yet renamed into place;
``manifest-write``
    the same for manifest.json;
``enospc``
    not a kill: the N-th store write fails with ENOSPC, as on a full disk.

The hooks wrap public seams only: :func:`greetkit.engines.get_engine` (every engine a build
renders with comes from it) and :func:`os.replace` (the store writes every file to a temp file
named ``TMP_PREFIX...`` and renames it into place). Truncating that temp file to half its length
just before the rename leaves on disk exactly what a process killed half-way through its
``write`` leaves.
"""

from __future__ import annotations

import errno
import functools
import os
import runpy
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

POINTS = ("render", "clip-write", "manifest-write", "enospc")


class Fault:
    """One armed fault: ``point`` fires on its ``nth`` hit (hits are counted across threads:
    the build writes clips from several DSP threads at once)."""

    def __init__(self, spec: str) -> None:
        point, _, nth = spec.partition(":")
        if point not in POINTS:
            raise SystemExit(f"faults.py: unknown point {point!r}; choose one of {POINTS}")
        self.point, self.nth = point, int(nth or 1)
        self.hits = 0
        self.guard = threading.Lock()

    def reached(self, point: str) -> bool:
        """Count a hit of ``point``; True exactly when it is the armed point's n-th."""
        if point != self.point:
            return False
        with self.guard:
            self.hits += 1
            return self.hits == self.nth


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(fault: Fault) -> None:
    """Install the hooks. Must run before greetkit's build modules are imported, so their
    ``from greetkit.engines import get_engine`` binds the wrapped lookup."""
    import greetkit.engines
    from greetkit.manifest import MANIFEST_NAME
    from greetkit.store import TMP_PREFIX

    assert not any(m.startswith(("greetkit.build", "greetkit.render")) for m in sys.modules)
    wrapped: set[int] = set()
    get_engine: Callable[..., Any] = greetkit.engines.get_engine

    @functools.wraps(get_engine)
    def get_engine_with_fault(name: str, **options: Any) -> Any:
        engine = get_engine(name, **options)
        if id(engine) not in wrapped:
            wrapped.add(id(engine))
            render = engine.render

            async def render_then_maybe_die(request: Any) -> Any:
                audio = await render(request)
                if fault.reached("render"):
                    die()
                return audio

            engine.render = render_then_maybe_die
        return engine

    greetkit.engines.get_engine = get_engine_with_fault  # type: ignore[assignment]

    replace = os.replace

    def replace_with_fault(src: Any, dst: Any, **kwargs: Any) -> None:
        if Path(src).name.startswith(TMP_PREFIX):
            if fault.reached("enospc"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            point = "manifest-write" if Path(dst).name == MANIFEST_NAME else "clip-write"
            if fault.reached(point):
                os.truncate(src, os.stat(src).st_size // 2)
                die()
        replace(src, dst, **kwargs)

    os.replace = replace_with_fault


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    fault = Fault(sys.argv[1])
    # As under ``python -m``: the working directory first on sys.path, not tests/.
    sys.path[0] = os.getcwd()
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    arm(fault)
    runpy.run_module("greetkit.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
