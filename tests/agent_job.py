"""examples/agent.py in LiveKit's real AgentServer, for test_agents (imported in job processes).

:data:`server` is the example's server configuration (its ``prewarm``, ``preload_modules``)
with a test entrypoint: LiveKit's fake job gives a mock room with no participant, so the
entrypoint runs the example's session and ``greet`` on a :class:`CaptureOutput` instead of
the room, and writes what it heard as JSON to ``$GREETKIT_TEST_JOB_OUT`` (the job process
cannot report to the test any other way).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from livekit.agents import Agent, AgentServer, JobContext, JobProcess
from livekit_capture import CaptureOutput

OUT_ENV = "GREETKIT_TEST_JOB_OUT"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agent.py"


def _example() -> ModuleType:
    name = "greetkit_example_agent"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


example = _example()


def prewarm(proc: JobProcess) -> None:
    """The example's prewarm (picklable by this module's name)."""
    example.prewarm(proc)


async def entrypoint(ctx: JobContext) -> None:
    """Greet a zh-CN caller the example's way; record the outcome for the test."""
    import greetkit.preload

    result: dict[str, Any] = {"pid": os.getpid()}
    try:
        bank = ctx.proc.userdata["greetings"]
        result["preloaded"] = greetkit.preload.preloaded
        result["same_bank"] = bank is greetkit.preload.bank
        session = example.make_session(ctx.proc.userdata)
        out = CaptureOutput(example.OUTPUT_RATE)
        session.output.audio = out
        await session.start(agent=Agent(instructions="Greet."), record=False)
        handle = example.greet(session, ctx.proc.userdata, "zh-CN")
        await handle.wait_for_playout()
        pcm = out.pcm()
        result["samples"] = len(pcm)
        result["equals_clip"] = bool(np.array_equal(pcm, bank["zh_default"].pcm(48000)))
        await session.aclose()
    except Exception as exc:  # reported to the test, which fails with it
        result["error"] = repr(exc)
    Path(os.environ[OUT_ENV]).write_text(json.dumps(result), encoding="utf-8")
    ctx.shutdown("greeted")


server = AgentServer(setup_fnc=prewarm, preload_modules=["greetkit.preload"],
                     num_idle_processes=1, host="127.0.0.1", port=0)
server.rtc_session(entrypoint)
