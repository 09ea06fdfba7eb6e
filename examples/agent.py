"""A LiveKit agent that greets every caller within milliseconds (livekit-agents 1.x).

Build the bank first (``greetkit build``), then run the worker::

    python examples/agent.py dev        # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET

The greeting is the pre-built clip for the caller's language (participant attribute
``language``, e.g. ``zh-CN``), or the phrase spoken live when no clip fits. Live speech uses
the LiveKit Inference TTS model named by ``LIVEKIT_TTS_MODEL`` (e.g. ``cartesia/sonic-2``)
when set, otherwise espeak-ng offline through :class:`greetkit.agents.EspeakTTS`.

The room output runs at 48 kHz, the rate clips are stored at, so nothing is resampled on the
way out. (LiveKit's default is 24 kHz; alternatively add 24000 to ``sample_rates`` in
voices.yaml and leave the room output alone: ``bank.say`` then plays the 24 kHz variant.)

To load the bank once per server instead of once per job, add
``preload_modules=["greetkit.preload"]`` to the AgentServer below and use
``greetkit.preload.bank`` in ``prewarm``.
"""

from __future__ import annotations

import os
from typing import Any

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    cli,
    room_io,
)
from livekit.agents.voice import SpeechHandle

import greetkit
from greetkit.agents import EspeakTTS

#: The store built by ``greetkit build``.
GREETINGS = os.environ.get("GREETKIT_BANK", "greetings")
#: The rate the room output plays at; clips are stored at 48 kHz.
OUTPUT_RATE = 48000

ROOM_OPTIONS = room_io.RoomOptions(
    audio_output=room_io.AudioOutputOptions(sample_rate=OUTPUT_RATE),
)


def prewarm(proc: JobProcess) -> None:
    """Runs synchronously in each job process before it gets a job: map the bank."""
    proc.userdata["greetings"] = greetkit.load(GREETINGS)


def make_session() -> AgentSession[Any]:
    """The session: a cloud TTS when one is configured, else espeak-ng offline."""
    model = os.environ.get("LIVEKIT_TTS_MODEL")
    return AgentSession(tts=model or EspeakTTS(sample_rate=OUTPUT_RATE))


def greet(session: AgentSession[Any], userdata: dict[Any, Any],
          language: str | None) -> SpeechHandle | None:
    """Say the greeting: the pre-built clip, or live TTS if none fits. Never raises."""
    bank = userdata["greetings"]
    return bank.say(session, "default", language=language)  # type: ignore[no-any-return]


async def entrypoint(ctx: JobContext) -> None:
    session = make_session()
    await session.start(
        agent=Agent(instructions="You are Xiaozhi, a friendly assistant."),
        room=ctx.room,
        room_options=ROOM_OPTIONS,
    )
    participant = await ctx.wait_for_participant()
    greet(session, ctx.proc.userdata, participant.attributes.get("language"))


server = AgentServer(setup_fnc=prewarm)
server.rtc_session(entrypoint)

if __name__ == "__main__":
    cli.run_app(server)
