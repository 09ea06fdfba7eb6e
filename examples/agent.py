"""A LiveKit agent that greets every caller within milliseconds (livekit-agents 1.x).

Build the bank first (``greetkit build``), then run the worker with livekit-agents' current
entry point (the built-in ``cli.run_app`` is deprecated in 1.8.9)::

    export GREETKIT_BANK=$PWD/greetings    # absolute: the forkserver loads it
    lk agent dev examples/agent.py         # the LiveKit CLI, or without it:
    python -m livekit.agents start examples/agent.py --dev   # or: python examples/agent.py --dev

Both need LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET.

The greeting is the pre-built clip for the caller's language (participant attribute
``language``, e.g. ``zh-CN``), or the phrase spoken live when no clip fits. Live speech uses
the engine the clips were rendered with (``bank.live_tts()``: the same LiveKit plugin entry,
edge voice or espeak-ng voice, leveled to the clips' loudness), or the LiveKit Inference TTS
model named by ``LIVEKIT_TTS_MODEL`` (e.g. ``cartesia/sonic-2``) when that is set.

The room output runs at 48 kHz, the rate clips are stored at, so nothing is resampled on the
way out. (LiveKit's default is 24 kHz; alternatively add 24000 to ``sample_rates`` in
voices.yaml and leave the room output alone: ``bank.say`` then plays the 24 kHz variant.)

The bank is loaded once per server: ``preload_modules=["greetkit.preload"]`` imports
:mod:`greetkit.preload` in LiveKit's forkserver (the bank named by ``GREETKIT_BANK``, every
checksum verified), and ``prewarm`` in each job process only picks it up. See
:mod:`greetkit.preload` for what happens under the ``spawn`` start method.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    room_io,
)
from livekit.agents.voice import SpeechHandle

import greetkit.preload

#: The rate the room output plays at; clips are stored at 48 kHz.
OUTPUT_RATE = 48000

ROOM_OPTIONS = room_io.RoomOptions(
    audio_output=room_io.AudioOutputOptions(sample_rate=OUTPUT_RATE),
)


def prewarm(proc: JobProcess) -> None:
    """Runs synchronously in each job process before it gets a job: the bank the
    forkserver loaded (already mapped and verified; costs nothing here)."""
    proc.userdata["greetings"] = greetkit.preload.bank


def make_session(userdata: dict[Any, Any]) -> AgentSession[Any]:
    """The session: the clips' own engine live (same voice, same loudness), unless a LiveKit
    Inference model is configured."""
    model = os.environ.get("LIVEKIT_TTS_MODEL")
    return AgentSession(tts=model or userdata["greetings"].live_tts())


def greet(session: AgentSession[Any], userdata: dict[Any, Any],
          language: str | None) -> SpeechHandle | None:
    """Say the greeting: the pre-built clip, or live TTS if none fits. Never raises."""
    bank = userdata["greetings"]
    return bank.say(session, "default", language=language)  # type: ignore[no-any-return]


async def entrypoint(ctx: JobContext) -> None:
    session = make_session(ctx.proc.userdata)
    await session.start(
        agent=Agent(instructions="You are Xiaozhi, a friendly assistant."),
        room=ctx.room,
        room_options=ROOM_OPTIONS,
    )
    participant = await ctx.wait_for_participant()
    greet(session, ctx.proc.userdata, participant.attributes.get("language"))


server = AgentServer(setup_fnc=prewarm, preload_modules=["greetkit.preload"])
server.rtc_session(entrypoint)

if __name__ == "__main__":
    # The thin entry point that replaces the deprecated cli.run_app; it finds `server` above.
    from livekit.agents.__main__ import main

    sys.exit(main(["start", __file__, *sys.argv[1:]]))
