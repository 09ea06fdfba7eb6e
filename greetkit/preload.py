"""Load the greeting bank once per agent server, before job processes are forked.

LiveKit Agents (1.x) runs every job in its own process and calls ``setup_fnc``/``prewarm``
in each one, so a bank loaded in prewarm is loaded once per job. On Linux the job processes
are forked from a *forkserver*, and ``AgentServer(preload_modules=[...])`` imports modules
there once. Importing this module loads the bank named by ``GREETKIT_BANK`` (default
``greetings``, relative to the working directory) into :data:`bank`, with every checksum
verified; each job process then starts with the bank already mapped and checked, sharing
the audio pages with every other process, and prewarm only picks it up::

    import greetkit.preload
    from livekit.agents import AgentServer, JobProcess

    def prewarm(proc: JobProcess) -> None:
        proc.userdata["greetings"] = greetkit.preload.bank   # costs ~nothing

    server = AgentServer(setup_fnc=prewarm, preload_modules=["greetkit.preload"])

Failure modes, and what this module does about them:

* ``spawn`` start method (macOS, Windows, or ``multiprocessing_context="spawn"``):
  ``preload_modules`` is ignored, so the ``import greetkit.preload`` runs again in every job
  process. Detected (the import runs in a multiprocessing child): one warning, and the bank
  is loaded with lazy checksums (only the files a job plays are hashed), not the whole bank.
* A misspelt name in ``preload_modules`` is silently ignored by Python's forkserver: the
  same detection applies, since the job process imports this module itself.
* A missing or broken store never raises: the bank is empty (or partial), one ERROR names
  the absolute path, and ``say`` speaks live. Set ``GREETKIT_BANK`` (best absolute) before
  the server starts (the forkserver inherits the environment).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
from types import FrameType

from greetkit.loader import Bank, load

# The LiveKit glue too (when the extra is installed), so no job pays for importing it.
with contextlib.suppress(ImportError):
    import greetkit.agents  # noqa: F401

__all__ = ["BANK_ENV", "VERSION_ENV", "bank", "preloaded"]

#: Environment variable naming the store directory to load.
BANK_ENV = "GREETKIT_BANK"
#: Environment variable pinning a published bank version (unset: the current one).
VERSION_ENV = "GREETKIT_BANK_VERSION"


def _pinned() -> int | None:
    raw = os.environ.get(VERSION_ENV, "").strip()
    if not raw:
        return None
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    logging.getLogger("greetkit").warning(
        "%s=%r is not a version number; loading the current version", VERSION_ENV,
        raw)
    return None



def _in_job_process() -> bool:
    """True when imported in a multiprocessing child: a forked job would have inherited
    this module from the forkserver, so preload_modules cannot have taken effect.

    A child still unpickling its target (an entrypoint whose module imports this one) has
    no ``parent_process()`` yet, but ``multiprocessing.spawn._main`` is on its stack; the
    forkserver importing its preload list never runs that function."""
    if multiprocessing.parent_process() is not None:
        return True
    spawn_main = os.path.join("multiprocessing", "spawn.py")
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "_main" and frame.f_code.co_filename.endswith(spawn_main):
            return True
        frame = frame.f_back
    return False


#: False when this module was imported in a job process itself (preload_modules did not
#: take effect: spawn start method, or the name missing or misspelt there).
preloaded: bool = not _in_job_process()

if not preloaded:
    logging.getLogger("greetkit").warning(
        "greetkit.preload imported in job process %d: preload_modules did not take "
        "effect (spawn start method, or 'greetkit.preload' missing or misspelt in "
        "preload_modules); loading here with checksums on first play", os.getpid())
    _verify: bool | None = None
else:
    _verify = True

#: The bank loaded at import. Verified once here (in the forkserver), so forked job
#: processes never re-hash it.
bank: Bank = load(os.environ.get(BANK_ENV) or "greetings", verify=_verify, version=_pinned())
