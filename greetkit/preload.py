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

``preload_modules`` is a no-op under the ``spawn`` start method (macOS, Windows): there the
``import greetkit.preload`` above runs in each process and loads the bank then, which is
still correct, just not shared. Like :func:`greetkit.load`, importing never raises for a
missing or broken store: the bank is empty (or partial) and ``say`` uses live TTS.
Set ``GREETKIT_BANK`` before the server starts (the forkserver inherits the environment).
"""

from __future__ import annotations

import contextlib
import os

from greetkit.loader import Bank, load

# The LiveKit glue too (when the extra is installed), so no job pays for importing it.
with contextlib.suppress(ImportError):
    import greetkit.agents  # noqa: F401

__all__ = ["BANK_ENV", "bank"]

#: Environment variable naming the store directory to load.
BANK_ENV = "GREETKIT_BANK"

#: The bank loaded at import. Verified once here, so forked job processes never re-hash it.
bank: Bank = load(os.environ.get(BANK_ENV) or "greetings", verify=True)
