"""One request to the service: its MP3 and boundary metadata, decoded and checked whole.

The decoder's priming (about 1105 leading samples at 24 kHz for the service's header-less MP3)
is *not* cut here: it is near-silence, the DSP chain's trim stage removes leading silence with a
pad anyway, and a fixed cut would eat real audio if the stream ever carried a gapless (Xing/LAME)
header that the decoder already honours. It is only allowed for in the truncation check.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .classify import TruncatedStream

#: MP3 decoder delay for the service's header-less stream (measured: a signal encoded by LAME
#: without a Xing/Info frame and decoded by libsndfile/mpg123 lags by 1105 samples at 24 kHz).
DECODER_DELAY_SAMPLES = 1105
#: Slack for the truncation check: two MP3 frames (2 x 576 samples at 24 kHz).
TRUNCATION_SLACK_S = 0.048
#: The service's time unit in boundary metadata: 100 ns ticks.
TICKS_PER_SECOND = 10_000_000


@dataclass(frozen=True, kw_only=True)
class Prosody:
    """The SSML prosody of a request, in edge-tts notation (``+10%``, ``-5Hz``)."""

    rate: str = "+0%"
    pitch: str = "+0Hz"
    volume: str = "+0%"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Prosody:
        """The prosody a clip's voices.yaml options ask for (missing ones are neutral)."""
        default = cls()
        return cls(rate=str(options.get("rate", default.rate)),
                   pitch=str(options.get("pitch", default.pitch)),
                   volume=str(options.get("volume", default.volume)))


@dataclass(frozen=True)
class Streamed:
    """What one request brought back: MP3 bytes and the service's boundary metadata."""

    mp3: bytes
    boundaries: list[dict[str, Any]]


async def stream(text: str, voice: str, prosody: Prosody, timeout: float) -> Streamed:
    """One request through the client; :class:`TruncatedStream` if it ended early."""
    from edge_tts import Communicate

    seconds = max(1, int(timeout + 0.999))
    comm = Communicate(text, voice, rate=prosody.rate, pitch=prosody.pitch,
                       volume=prosody.volume, connect_timeout=seconds, receive_timeout=seconds)
    audio = bytearray()
    boundaries: list[dict[str, Any]] = []
    async for chunk in comm.stream():
        if chunk["type"] == "audio":
            audio += chunk.get("data", b"")
        else:
            boundaries.append({"type": chunk["type"], "text": chunk.get("text", ""),
                               "offset": chunk.get("offset", 0),
                               "duration": chunk.get("duration", 0)})
    # The client counts audio bytes per request and folds them into cumulative_audio_bytes
    # only on turn.end: a stream the server closed early leaves them out. (edge-tts 7.3.1;
    # a client without that key skips this check; the duration check still applies.)
    cumulative = comm.state.get("cumulative_audio_bytes")
    if isinstance(cumulative, int) and cumulative != len(audio):
        raise TruncatedStream(f"stream ended without turn.end after {len(audio)} bytes")
    return Streamed(bytes(audio), boundaries)


def decode_checked(mp3: bytes, boundaries: Sequence[Mapping[str, Any]]
                   ) -> tuple[npt.NDArray[np.float32], int]:
    """Decode MP3 bytes and refuse audio shorter than the service's own boundary metadata."""
    import soundfile as sf

    try:
        samples, sr = sf.read(io.BytesIO(mp3), dtype="float32")
    except (RuntimeError, ValueError, sf.LibsndfileError) as exc:
        raise TruncatedStream(f"undecodable MP3 ({len(mp3)} bytes): {exc}") from exc
    if samples.shape[0] == 0:
        raise TruncatedStream("MP3 decoded to no samples")
    if boundaries:
        expected = max(float(b["offset"]) + float(b["duration"]) for b in boundaries)
        expected /= TICKS_PER_SECOND
        # The decoder's priming (a fixed count of samples for MPEG Layer III, whatever the rate)
        # shifts audio later; only the remainder counts as content.
        got = (samples.shape[0] - DECODER_DELAY_SAMPLES) / sr
        if got + TRUNCATION_SLACK_S < expected:
            raise TruncatedStream(f"audio is {got:.2f}s but the service's boundaries end at "
                                  f"{expected:.2f}s: truncated stream")
    return np.asarray(samples, dtype=np.float32), int(sr)
