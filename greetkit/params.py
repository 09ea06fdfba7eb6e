"""The parameters that shape a clip's delivered bytes, without the code that applies them.

Loudness presets (voices.yaml's ``loudness:`` vocabulary) and :class:`DspParams` live here, in
a module that imports nothing heavy: content keys, the stale rule and a no-op build need them,
and must not pay for scipy (:mod:`greetkit.dsp` and :mod:`greetkit.loudness` import it, and
re-export these names).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from greetkit.manifest import BASE_RATE

#: (target LUFS, true-peak ceiling dBTP) per named preset.
LOUDNESS_PRESETS: dict[str, tuple[float, float]] = {
    "speech": (-18.0, -1.5),
    "podcast": (-16.0, -1.0),
    "broadcast": (-23.0, -1.0),  # EBU R 128
    "telephony": (-26.0, -3.0),
}
DEFAULT_PRESET = "speech"

#: The longest clip greetkit renders, stores or accepts as a recorded take, seconds. A
#: greeting lasts seconds; a runaway render (an engine looping, an hour-long take) would cost
#: minutes of DSP and megabytes per worker.
MAX_CLIP_SECONDS = 60.0


def too_long(seconds: float) -> str | None:
    """The clip-length cap, the one place it is applied: ``"a clip may last at most 60 s"``
    when ``seconds`` is over :data:`MAX_CLIP_SECONDS`, else None. Callers say what was too
    long before it and the fix after it.

    >>> too_long(75.0), too_long(3.2)
    ('a clip may last at most 60 s', None)
    """
    return f"a clip may last at most {MAX_CLIP_SECONDS:g} s" if seconds > MAX_CLIP_SECONDS else None


#: Bumped whenever a change to the DSP chain changes output bytes for the same parameters;
#: it is part of :meth:`DspParams.key`, hence of every clip's content key.
CHAIN_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class DspParams:
    """Everything that shapes a clip's delivered bytes. Copy with ``dataclasses.replace``."""

    #: Integrated loudness target, LUFS (BS.1770).
    target_lufs: float = -18.0
    #: True-peak ceiling, dBTP (BS.1770 Annex 2), held on the final int16 samples.
    true_peak_ceiling_db: float = -1.5
    #: Output sample rate, Hz.
    sample_rate: int = BASE_RATE
    #: soxr quality recipe for resampling.
    resample_quality: str = "VHQ"
    #: Trim threshold relative to the clip's speech level (95th percentile of 10 ms frame
    #: RMS), dB. Frames quieter than this at either end are trimmed.
    trim_threshold_db: float = -45.0
    #: Silence kept before the first and after the last sound, ms.
    pad_ms: float = 80.0
    #: Raised-cosine fade-in and fade-out length, ms (against clicks at the cut points).
    fade_ms: float = 5.0
    #: Limiter look-ahead (attack) and release, ms.
    limiter_lookahead_ms: float = 3.0
    limiter_release_ms: float = 80.0
    #: TPDF dither amplitude in LSB peak (1.0 = the standard +-1 LSB triangular dither).
    dither_lsb: float = 1.0

    def key(self) -> dict[str, object]:
        """Every parameter that changes output bytes, plus the chain version, for the
        content key."""
        return {**asdict(self), "chain_version": CHAIN_VERSION}
