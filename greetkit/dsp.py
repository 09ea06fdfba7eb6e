"""The per-clip DSP chain: engine audio in, delivered int16 PCM out.

Every stage is a small pure function over numpy arrays with one signature::

    stage(samples: FloatArray, sample_rate: int, params: DspParams) -> FloatArray

(``samples`` float64 of shape ``(frames,)``), except the first (any shape in) and the last
(int16 out, it needs the dither seed). :func:`process` runs them top to bottom:

    to_mono -> resample -> trim -> normalize -> fade -> dither_to_int16 -> final check

Why resample *before* loudness and limiting (and not last, as a naive chain would):
the true-peak ceiling is a property of the exact samples delivered. Resampling after the
limiter would create new inter-sample peaks (a band-limiting filter rings on transients) and
shift loudness slightly, so the ceiling would only hold approximately. Resampling first,
then normalizing and limiting at the output rate, then dithering and *measuring the int16
result* makes the reported LUFS / dBTP the truth about the stored file. Each output-rate
variant (48 kHz main file, 24 kHz, ...) is made by running the whole chain again from the
engine's source audio, so no file is ever the product of two resamplings.

Nothing here does I/O; errors are :class:`~greetkit.errors.AudioError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from greetkit import loudness
from greetkit.errors import AudioError
from greetkit.params import CHAIN_VERSION as CHAIN_VERSION
from greetkit.params import DspParams as DspParams

FloatArray = npt.NDArray[np.float64]

# int16 full scale as libsndfile/ffmpeg read it back: sample / 32768.
_INT16_SCALE = 32768.0
# Below this frame RMS (dBFS) a clip counts as silent: the BS.1770 absolute gate level.
_SILENCE_DBFS = -70.0


@dataclass(frozen=True)
class ProcessedAudio:
    """A processed clip and what was measured on its final int16 samples."""

    pcm: npt.NDArray[np.int16]  # shape (n,)
    sample_rate: int
    lufs: float  # loudness.measure on the int16 result
    true_peak_db: float
    gain_db: float  # static gain applied by normalize
    limiter_db: float  # the limiter's deepest gain reduction, 0 when it did not act
    warnings: tuple[str, ...]


# -- stages ----------------------------------------------------------------------------

def to_mono(samples: npt.ArrayLike, sample_rate: int, params: DspParams) -> FloatArray:
    """Average the channels (equal weights) into float64 ``(frames,)``.

    Averaging, not summing: a centred stereo voice keeps its level; the loudness stage
    sets the final level anyway.
    """
    x = loudness.as_float_frames(samples)
    if x.shape[0] == 0:
        raise AudioError("empty audio: the engine returned no samples")
    if not np.all(np.isfinite(x)):
        raise AudioError("audio contains NaN or infinite samples")
    return np.asarray(x.mean(axis=1), dtype=np.float64)


def resample(samples: FloatArray, sample_rate: int, params: DspParams) -> FloatArray:
    """Resample to ``params.sample_rate`` with soxr (``params.resample_quality``)."""
    if sample_rate == params.sample_rate:
        return samples
    import soxr

    out = soxr.resample(samples, sample_rate, params.sample_rate,
                        quality=params.resample_quality)
    return np.asarray(out, dtype=np.float64)


def _frame_rms_db(samples: FloatArray, frame: int) -> FloatArray:
    """RMS per non-overlapping frame of ``frame`` samples (last partial frame included), dBFS."""
    n = samples.shape[0]
    count = max(1, math.ceil(n / frame))
    padded = np.zeros(count * frame)
    padded[:n] = samples
    ms = (padded.reshape(count, frame) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.asarray(10.0 * np.log10(ms), dtype=np.float64)


def trim(samples: FloatArray, sample_rate: int, params: DspParams) -> FloatArray:
    """Cut leading/trailing silence, keeping ``params.pad_ms`` of it at each end.

    The threshold follows the clip, not a fixed dBFS: the speech level is the 95th
    percentile of 10 ms frame RMS, and the threshold is ``params.trim_threshold_db`` under
    it, but never below 6 dB over the noise floor (10th percentile frame) so an MP3 or
    dithered floor is not mistaken for sound; it is capped 20 dB under the speech level so
    a clip with no pauses is not eaten into. Raises :class:`AudioError` if nothing is
    above -70 dBFS.
    """
    frame = max(1, round(0.010 * sample_rate))
    levels = _frame_rms_db(samples, frame)
    loud = levels[np.isfinite(levels)]
    if loud.size == 0 or float(loud.max()) < _SILENCE_DBFS:
        raise AudioError("audio is silent: nothing above -70 dBFS to keep")
    speech = float(np.percentile(loud, 95))
    # Digital-silence frames (-inf dB) count as the lowest floor there is.
    floor = float(np.percentile(np.maximum(levels, -200.0), 10))
    threshold = max(speech + params.trim_threshold_db, floor + 6.0, _SILENCE_DBFS)
    threshold = min(threshold, speech - 20.0)
    above = np.flatnonzero(levels > threshold)
    pad = round(params.pad_ms * 1e-3 * sample_rate)
    start = max(0, int(above[0]) * frame - pad)
    end = min(samples.shape[0], (int(above[-1]) + 1) * frame + pad)
    return samples[start:end]


def fade(samples: FloatArray, sample_rate: int, params: DspParams) -> FloatArray:
    """Raised-cosine fade-in and fade-out of ``params.fade_ms`` (never more than a
    quarter of the clip), so the first and last samples are zero: no click at play start."""
    return samples * fade_curve(samples.shape[0], sample_rate, params)


def fade_curve(frames: int, sample_rate: int, params: DspParams) -> FloatArray:
    """The per-sample gain :func:`fade` applies: the ramps at both ends, 1.0 between."""
    curve = np.ones(frames)
    length = min(round(params.fade_ms * 1e-3 * sample_rate), frames // 4)
    if length > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(length) / length)
        curve[:length] = ramp
        curve[frames - length:] = ramp[::-1]
    return curve


def dither_to_int16(samples: FloatArray, params: DspParams, *, seed: int
                    ) -> npt.NDArray[np.int16]:
    """Scale to int16 (x 32768) with TPDF dither (difference of two uniform variables,
    +-``params.dither_lsb`` LSB peak) and round. Deterministic: the noise comes from
    ``numpy.random.default_rng(seed)``, so the same inputs give the same bytes."""
    rng = np.random.default_rng(seed)
    noise = (rng.random(samples.shape[0]) - rng.random(samples.shape[0])) * params.dither_lsb
    pcm = np.round(samples * _INT16_SCALE + noise)
    return np.clip(pcm, -32768, 32767).astype(np.int16)


# -- the chain --------------------------------------------------------------------------

def process(samples: npt.ArrayLike, sample_rate: int, params: DspParams, *,
            seed: int = 0) -> ProcessedAudio:
    """Run the whole chain on one clip's engine audio.

    ``samples`` is float in [-1, 1], ``(frames,)`` or ``(frames, channels)``, at the
    engine's ``sample_rate``. Returns int16 mono PCM at ``params.sample_rate`` whose
    integrated loudness (by :func:`greetkit.loudness.measure`) is within 0.05 LU of the
    target and whose true peak is <= the ceiling. Raises :class:`AudioError` for empty
    or silent audio.

    >>> t = np.arange(22050) / 22050
    >>> out = process(0.3 * np.sin(2 * np.pi * 440 * t), 22050, DspParams(), seed=1)
    >>> out.pcm.dtype, out.sample_rate, round(out.lufs, 1)
    (dtype('int16'), 48000, -18.0)
    """
    if sample_rate <= 0:
        raise AudioError(f"invalid sample rate {sample_rate}")
    # 1. one channel: the delivered clip is mono.
    x = to_mono(samples, sample_rate, params)
    # 2. to the output rate first, so everything below acts on the delivered samples.
    x = resample(x, sample_rate, params)
    rate = params.sample_rate
    # 3. cut engine silence at both ends, keep a short natural pad.
    x = trim(x, rate, params)
    # 4. loudness to target; the true-peak limiter takes what the gain would push over.
    # The true peak is measured once; every later check (after the limiter, after dither)
    # is bounded from the previous one and oversamples only near the ceiling.
    normalized = loudness.normalize_gain(
        x, rate, params.target_lufs, params.true_peak_ceiling_db,
        lookahead_ms=params.limiter_lookahead_ms, release_ms=params.limiter_release_ms)
    report = normalized.report
    if "silent" in report.warnings:
        raise AudioError("audio is silent after trimming: no 400 ms block above the "
                         "-70 LUFS gate (BS.1770), nothing to normalize")
    # 5. fades against clicks at the cut points (inside the pad, so loudness is unchanged).
    curve = fade_curve(x.shape[0], rate, params)
    y = normalized.samples[:, 0] * curve
    # 6. TPDF-dithered int16; 7. measure what will be stored. Rounding and dither can lift
    # a peak sitting at the ceiling by a hair: scale down by the excess and redo.
    ceiling = params.true_peak_ceiling_db
    for _ in range(6):
        pcm = dither_to_int16(y, params, seed=seed)
        final = loudness.measure(pcm, rate, peak=False)
        stored = pcm / _INT16_SCALE
        # stored = normalized * curve + (dither and rounding): bounded per block from the
        # normalize stage's measurement, so only the blocks near its peak are oversampled.
        peak = normalized.meter.derived(stored, curve, stored - y).peak()
        true_peak_db = 20.0 * math.log10(peak) if peak > 0.0 else -math.inf
        over = true_peak_db - ceiling
        if over <= 0.0:
            break
        scale = 10.0 ** (-(over + 0.002) / 20.0)
        y = y * scale
        curve = curve * scale
    else:
        raise AudioError(f"could not hold the {ceiling} dBTP ceiling after dithering "
                         f"(true peak {true_peak_db:.2f} dBTP)")
    warnings = tuple(dict.fromkeys(report.warnings + final.warnings))
    return ProcessedAudio(pcm=pcm, sample_rate=rate, lufs=final.integrated_lufs,
                          true_peak_db=true_peak_db, gain_db=report.gain_db,
                          limiter_db=report.limiter_db, warnings=warnings)
