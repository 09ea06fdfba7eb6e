"""greetkit/params.py: the scipy-free parameters and limits."""

from __future__ import annotations

from greetkit.manifest import BASE_RATE
from greetkit.params import MAX_CLIP_SECONDS, DspParams, too_long


def test_the_clip_length_cap_is_exclusive() -> None:
    """A clip of exactly the cap passes; a sample longer names the limit."""
    assert too_long(MAX_CLIP_SECONDS) is None
    assert too_long(MAX_CLIP_SECONDS + 1e-6) == f"a clip may last at most {MAX_CLIP_SECONDS:g} s"


def test_dsp_output_defaults_to_the_stored_base_rate() -> None:
    """Without a rate, the DSP chain delivers the rate every clip is stored at."""
    assert DspParams().sample_rate == BASE_RATE == 48000
