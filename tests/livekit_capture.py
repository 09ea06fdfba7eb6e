"""CaptureOutput: a real livekit-agents ``io.AudioOutput`` that keeps every frame (tests' sink),
and :func:`started_session`, a real AgentSession speaking into one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
from livekit import rtc
from livekit.agents import Agent, AgentSession, tts
from livekit.agents.voice import io

_Sink = TypeVar("_Sink", bound="CaptureOutput")


class CaptureOutput(io.AudioOutput):
    """An audio sink that records frames per playback segment.

    A segment starts with the first frame after a flush. ``flush`` ends it as fully played:
    at once, or with ``realtime=True`` after the segment's duration, as a room output does
    when its buffer drains. ``clear_buffer`` ends a segment still playing as interrupted.
    Each segment reports ``playback_finished`` exactly once, so SpeechHandles complete.
    """

    def __init__(self, sample_rate: int | None, *, realtime: bool = False) -> None:
        super().__init__(label="capture", capabilities=io.AudioOutputCapabilities(pause=True),
                         sample_rate=sample_rate)
        self.segments: list[list[rtc.AudioFrame]] = []
        self.interrupted = 0
        self._realtime = realtime
        self._open = False
        self._playing = False
        self._pushed = 0.0
        self._started_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._open:
            self._open = self._playing = True
            self._pushed, self._started_at = 0.0, time.monotonic()
            self.segments.append([])
            self.on_playback_started(created_at=time.time())
        self.segments[-1].append(frame)
        self._pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if not self._open:
            return
        self._open = False
        if self._realtime:
            remaining = self._pushed - (time.monotonic() - self._started_at)
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, remaining), self._finish, self._pushed, False)
        else:
            self._finish(self._pushed, False)

    def clear_buffer(self) -> None:
        if not self._playing:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._open = False
        self.interrupted += 1
        played = min(self._pushed, time.monotonic() - self._started_at)
        self._finish(played, True)

    def _finish(self, position: float, interrupted: bool) -> None:
        self._playing, self._timer = False, None
        self.on_playback_finished(playback_position=position, interrupted=interrupted)

    def pcm(self, segment: int = -1) -> np.ndarray[Any, np.dtype[np.int16]]:
        """The int16 samples of one captured segment."""
        return np.concatenate([np.frombuffer(f.data, dtype=np.int16)
                               for f in self.segments[segment]])

    def rates(self) -> set[int]:
        return {f.sample_rate for seg in self.segments for f in seg}


@asynccontextmanager
async def started_session(live: tts.TTS[Any], sink: _Sink, *,
                          instructions: str = "Greet the caller.",
                          ) -> AsyncIterator[AgentSession[Any]]:
    """A started AgentSession (no room, no LLM/STT) speaking with ``live`` into ``sink``;
    closed on exit."""
    session: AgentSession[Any] = AgentSession(tts=live)
    session.output.audio = sink
    await session.start(agent=Agent(instructions=instructions), record=False)
    try:
        yield session
    finally:
        await session.aclose()
