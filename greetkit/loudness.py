"""Loudness and true peak per ITU-R BS.1770-4/5 and EBU Tech 3341/3342, plus normalization.

Pure functions over numpy arrays: ``samples`` is float, shape ``(frames,)`` (mono) or
``(frames, channels)``, full scale = 1.0; integer PCM is accepted and scaled by its full
scale (int16 / 32768, as libsndfile and ffmpeg read it).

What is measured, and where it is specified:

* **K-weighting** (BS.1770 Annex 1, Fig. 1/2, Tables 1/2): a high-shelf "pre-filter" then the
  "RLB" high-pass. The standard tabulates coefficients at 48 kHz only; here they are derived
  for any rate from the analog prototypes by the bilinear transform with prewarping, which
  reproduces the 48 kHz tables to ~1e-15 (see :func:`k_weighting_coefficients`).
* **Gating blocks** (Annex 1 §2.4): 400 ms blocks every 100 ms (75 % overlap). Only complete
  blocks count: a partial block at the end is ignored, as the standard's block count
  ``floor((T - T_g) / (T_g * step)) + 1`` implies.
* **Integrated loudness** (eq. 4-7): absolute gate -70 LUFS, relative gate 10 LU under the
  mean of the absolutely gated blocks.
* **Momentary / short-term** (EBU Tech 3341 §2.2): 400 ms and 3 s windows, every 100 ms.
* **Loudness range** (EBU Tech 3342 §3): 3 s short-term values every 100 ms, absolute gate
  -70 LUFS, relative gate 20 LU under their mean, LRA = 95th - 10th percentile.
* **True peak** (BS.1770 Annex 2, Tech 3341 §2.3): the signal is oversampled to at least
  384 kHz (x8 at 48 kHz) with a long Kaiser-window polyphase interpolator; the largest
  magnitude is refined by parabolic interpolation over its neighbours, so tones up to
  0.42 fs at any phase read within ~0.05 dB of their analog peak (a bare x4 grid
  under-reads a 16 kHz tone at 48 kHz by up to ~0.3 dB).

Policies where the standards say nothing (documented, each with a warning in the report):

* **Clips shorter than one gating block (< 0.4 s)**: there is no complete block, so the
  integrated and momentary loudness are taken over the *whole clip as a single block*
  (mean square of the K-weighted clip over its own length, still subject to the -70 LUFS
  absolute gate). The report carries the warning ``short-clip``.
* **Clips shorter than the 3 s short-term window**: max short-term is the loudness of the
  whole clip (mean square over its length) and LRA is 0.0 (no distribution to measure).
  This is normal for greetings, so it is not a warning.
* **Silence** (no block above -70 LUFS, or all-zero): loudness is ``-inf``, true peak of an
  all-zero signal is ``-inf``; no exception. Warning ``silent``. JSON writers must map
  ``-inf`` to ``null``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from greetkit import truepeak
from greetkit.params import DEFAULT_PRESET as DEFAULT_PRESET
from greetkit.params import LOUDNESS_PRESETS
from greetkit.truepeak import TRUE_PEAK_MIN_RATE as TRUE_PEAK_MIN_RATE
from greetkit.truepeak import TruePeakMeter as TruePeakMeter
from greetkit.truepeak import as_float_frames as as_float_frames
from greetkit.truepeak import oversampling_factor as oversampling_factor

FloatArray = npt.NDArray[np.float64]

# Named (target LUFS, true-peak ceiling dBTP) pairs are voices.yaml vocabulary, defined once
# in greetkit.params (scipy-free, for the spec and content keys) and re-exported here.
PRESETS = LOUDNESS_PRESETS

# BS.1770 Annex 1 §2.4: gating block 400 ms, overlap 75 % -> a new block every 100 ms.
BLOCK_SECONDS = 0.4
STEP_SECONDS = 0.1
SEGMENTS_PER_BLOCK = 4
# EBU Tech 3341 §2.2: short-term window 3 s (30 steps of 100 ms).
SHORT_TERM_SEGMENTS = 30
# BS.1770 eq. 4: absolute gate; eq. 6: relative gate.
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
# EBU Tech 3342 §3: LRA's relative gate and percentiles.
LRA_RELATIVE_GATE_LU = -20.0
LRA_LOW_PERCENTILE = 10.0
LRA_HIGH_PERCENTILE = 95.0
#: Limiter gain reduction (dB) past which a clip is flagged ``heavy-limiting``: beyond ~6 dB a
#: look-ahead limiter audibly flattens speech, so the take or the target needs a look.
HEAVY_LIMITING_DB = 6.0
# BS.1770 eq. 2: L = -0.691 + 10 log10(sum G_i z_i); -0.691 puts a 997 Hz 0 dBFS sine
# in the first channel at -3.01 LKFS.
LOUDNESS_OFFSET = -0.691
# BS.1770 Table 3: channel weights. 1.41 (~ +1.5 dB) for the surround channels.
SURROUND_WEIGHT = 1.41

# Analog prototypes behind the BS.1770 48 kHz tables (stage 1 shelf, stage 2 high-pass).
# Fitted to the published coefficients; values widely used by open meters.
_SHELF_F0 = 1681.974450955533
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_Q = 0.7071752369554196
_SHELF_VB_EXPONENT = 0.4996667741545416  # band gain Vb = Vh ** this (shelf "midpoint")
_HP_F0 = 38.13547087602444
_HP_Q = 0.5003270373238773


@dataclass(frozen=True)
class LoudnessReport:
    """What :func:`measure` found. Loudness in LUFS, LRA in LU, true peak in dBTP."""

    integrated_lufs: float
    lra: float
    max_momentary_lufs: float
    max_short_term_lufs: float
    true_peak_db: float
    #: Policy flags: ``"short-clip"`` (< 0.4 s, single-block result), ``"silent"``.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class NormalizeReport:
    """What :func:`normalize` did: static gain, the limiter's deepest gain reduction (dB,
    >= 0, 0 when it did not act), the result as measured, and any warnings."""

    gain_db: float
    limiter_db: float
    integrated_lufs: float
    true_peak_db: float
    warnings: tuple[str, ...] = ()


# -- input handling -----------------------------------------------------------------------

def _frames(samples: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
    """``samples`` as ``(frames, channels)`` without copying float input (float32 stays
    float32: the meters convert chunk by chunk, so a long file is not doubled in memory)."""
    x = np.asarray(samples)
    if x.dtype.kind not in "f" or x.ndim not in (1, 2):
        return as_float_frames(x)
    return x[:, None] if x.ndim == 1 else x


def channel_weights(channels: int) -> FloatArray:
    """BS.1770 Table 3 weights G_i for a channel count, in WAVE order.

    1: mono (1.0). 2: L, R. 5: L, R, C, Ls, Rs. 6: L, R, C, LFE, Ls, Rs (LFE excluded,
    weight 0). Other counts: 1.0 for every channel.
    """
    if channels == 5:
        return np.array([1.0, 1.0, 1.0, SURROUND_WEIGHT, SURROUND_WEIGHT])
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, SURROUND_WEIGHT, SURROUND_WEIGHT])
    return np.ones(channels)


# -- K-weighting ----------------------------------------------------------------------------

@lru_cache(maxsize=32)
def k_weighting_coefficients(sample_rate: float) -> tuple[tuple[float, ...], ...]:
    """Biquad coefficients ``(b_shelf, a_shelf, b_hp, a_hp)`` of the K-weighting at a rate.

    Bilinear transform with prewarping, K = tan(pi f0 / fs), of the analog prototypes
    (BS.1770 Annex 1 §1, Figs. 1-2):

    * shelf: H(s) = (Vh s^2 + Vb (w0/Q) s + w0^2) / (s^2 + (w0/Q) s + w0^2) in the
      normalised form b0 = (Vh + Vb K/Q + K^2)/a0, b1 = 2(K^2 - Vh)/a0,
      b2 = (Vh - Vb K/Q + K^2)/a0, a1 = 2(K^2 - 1)/a0, a2 = (1 - K/Q + K^2)/a0,
      a0 = 1 + K/Q + K^2, with Vh = 10^(G/20).
    * high-pass: H(s) = s^2 / (s^2 + (w0/Q) s + w0^2), a1 and a2 as above; the numerator
      is Table 2's (1, -2, 1) at 48 kHz and keeps that filter's passband gain elsewhere.

    At 48 kHz this gives Table 1 (b0 1.53512485958697, b1 -2.69169618940638,
    b2 1.19839281085285, a1 -1.69065929318241, a2 0.73248077421585) and Table 2
    (a1 -1.99004745483398, a2 0.99007225036621).

    >>> b, a, _, _ = k_weighting_coefficients(48000)
    >>> round(b[0], 8)
    1.53512486
    """
    fs = float(sample_rate)
    k = math.tan(math.pi * _SHELF_F0 / fs)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh ** _SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    b_shelf = ((vh + vb * k / _SHELF_Q + k * k) / a0,
               2.0 * (k * k - vh) / a0,
               (vh - vb * k / _SHELF_Q + k * k) / a0)
    a_shelf = (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0)

    a_hp, a0 = _high_pass_denominator(fs)
    # Table 2's numerator (1, -2, 1) is not divided by a0, so the 48 kHz filter has a
    # passband gain of a0(48 kHz) (+0.086 dB), which the -0.691 constant absorbs. Keep that
    # same analog gain at every rate: b = (1, -2, 1) * a0(48 kHz) / a0(fs) (exactly
    # (1, -2, 1) at 48 kHz). Reusing (1, -2, 1) would shift readings by +0.04 dB at 16 kHz.
    scale = _high_pass_denominator(48000.0)[1] / a0
    b_hp = (scale, -2.0 * scale, scale)
    return b_shelf, a_shelf, b_hp, a_hp


def _high_pass_denominator(fs: float) -> tuple[tuple[float, float, float], float]:
    """RLB high-pass denominator (1, a1, a2) at ``fs`` and its normalising a0."""
    k = math.tan(math.pi * _HP_F0 / fs)
    a0 = 1.0 + k / _HP_Q + k * k
    return (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HP_Q + k * k) / a0), a0


def k_weight(samples: npt.ArrayLike, sample_rate: float) -> FloatArray:
    """K-weighted signal (BS.1770 Annex 1 Fig. 3 stages 1-2), shape ``(frames, channels)``.

    Filters start from rest (zero state), as a meter switched on at the first sample.
    """
    x = as_float_frames(samples)
    b1, a1, b2, a2 = k_weighting_coefficients(float(sample_rate))
    sos = np.array([[*b1, *a1], [*b2, *a2]])
    out: FloatArray = signal.sosfilt(sos, x, axis=0)
    return out


# -- blocks and gating ---------------------------------------------------------------------

# Frames K-weighted per pass: bounds memory on long files; filter state carries over.
_KW_CHUNK_FRAMES = 1 << 18


def _k_weighted_powers(x: npt.NDArray[np.floating[Any]], sample_rate: float
                       ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """K-weight ``x`` and sum z^2 per complete 100 ms step (BS.1770 eq. 1 numerators).

    Returns ``(sums[steps, ch], lengths[steps], mean_square[ch])``, the last over the whole
    signal (for the short-clip policy). Step boundaries are round(j * fs / 10), so rates
    where 100 ms is not a whole number of samples (e.g. 11025 Hz) still tile exactly; a
    partial step at the end is left out. Works in chunks with the filter state carried
    across, so the result equals one pass over the whole signal.
    """
    n, channels = x.shape
    steps = math.floor(n / (sample_rate * STEP_SECONDS) + 1e-9)
    bounds = np.round(np.arange(steps + 1) * sample_rate * STEP_SECONDS).astype(np.int64)
    bounds = bounds[bounds <= n]
    steps = max(0, len(bounds) - 1)
    sums = np.zeros((steps, channels))
    total = np.zeros(channels)
    b1, a1, b2, a2 = k_weighting_coefficients(float(sample_rate))
    sos = np.array([[*b1, *a1], [*b2, *a2]])
    state = np.zeros((2, 2, channels))  # filters start from rest
    for c0 in range(0, n, _KW_CHUNK_FRAMES):
        c1 = min(n, c0 + _KW_CHUNK_FRAMES)
        z, state = signal.sosfilt(sos, np.asarray(x[c0:c1], dtype=np.float64), axis=0,
                                  zi=state)
        sq = np.square(z, out=z)
        # The chunk cut at every step boundary inside it, each piece summed once (a
        # cumulative sum would cost a dependent pass over the chunk and lose precision).
        inside = bounds[(bounds > c0) & (bounds < c1)]
        starts = np.concatenate([[c0], inside])
        pieces = np.add.reduceat(sq, starts - c0, axis=0)
        step = np.searchsorted(bounds, starts, side="right") - 1
        keep = step < steps  # not the partial step after the last boundary
        sums[step[keep]] += pieces[keep]
        total += pieces.sum(axis=0)
    return sums, np.diff(bounds).astype(np.float64), total / max(n, 1)


def _window_powers(sums: FloatArray, lengths: FloatArray, segments: int,
                   weights: FloatArray) -> FloatArray:
    """Weighted mean square sum_i G_i z_ij (BS.1770 eq. 1-2 inner term) of every complete
    window of ``segments`` steps, one window per step."""
    count = sums.shape[0] - segments + 1
    if count <= 0:
        return np.zeros(0)
    csum = np.concatenate([np.zeros((1, sums.shape[1])), np.cumsum(sums, axis=0)])
    clen = np.concatenate([[0.0], np.cumsum(lengths)])
    energy = (csum[segments:] - csum[:count]) / (clen[segments:] - clen[:count])[:, None]
    return np.asarray(energy @ weights, dtype=np.float64)


def _lufs(power: FloatArray | float) -> FloatArray:
    """BS.1770 eq. 2: L = -0.691 + 10 log10(power); -inf for zero power."""
    with np.errstate(divide="ignore"):
        return np.asarray(LOUDNESS_OFFSET + 10.0 * np.log10(power), dtype=np.float64)


def gated_loudness(block_powers: FloatArray, relative_gate_lu: float = RELATIVE_GATE_LU
                   ) -> float:
    """Integrated loudness of weighted block powers: BS.1770 eq. 4-7.

    Absolute gate: keep blocks with l_j > -70 LUFS (eq. 4-5). Relative threshold:
    Gamma_r = -0.691 + 10 log10(mean of kept powers) + ``relative_gate_lu`` (eq. 6).
    Result: -0.691 + 10 log10(mean of powers over blocks above both gates) (eq. 7).
    Returns -inf when no block passes.
    """
    levels = _lufs(block_powers)
    kept = block_powers[levels > ABSOLUTE_GATE_LUFS]
    if kept.size == 0:
        return -math.inf
    gate = float(_lufs(float(np.mean(kept)))) + relative_gate_lu
    final = kept[_lufs(kept) > gate]
    return float(_lufs(float(np.mean(final)))) if final.size else -math.inf


def momentary_loudness(samples: npt.ArrayLike, sample_rate: float) -> FloatArray:
    """Momentary loudness (400 ms window, ungated) every 100 ms, LUFS. Complete windows only."""
    x = _frames(samples)
    sums, lengths, _ = _k_weighted_powers(x, sample_rate)
    return _lufs(_window_powers(sums, lengths, SEGMENTS_PER_BLOCK, channel_weights(x.shape[1])))


def short_term_loudness(samples: npt.ArrayLike, sample_rate: float) -> FloatArray:
    """Short-term loudness (3 s window, ungated) every 100 ms, LUFS. Complete windows only."""
    x = _frames(samples)
    sums, lengths, _ = _k_weighted_powers(x, sample_rate)
    return _lufs(_window_powers(sums, lengths, SHORT_TERM_SEGMENTS, channel_weights(x.shape[1])))


def loudness_range(short_term_powers: FloatArray) -> float:
    """EBU Tech 3342 LRA from short-term (3 s) weighted powers taken every 100 ms.

    Absolute gate -70 LUFS, relative gate 20 LU under the power mean of the absolutely
    gated values, then the 95th minus the 10th percentile of the remaining loudness values.
    0.0 when nothing passes the gates.
    """
    levels = _lufs(short_term_powers)
    kept = short_term_powers[levels > ABSOLUTE_GATE_LUFS]
    if kept.size == 0:
        return 0.0
    gate = float(_lufs(float(np.mean(kept)))) + LRA_RELATIVE_GATE_LU
    final = levels[levels > ABSOLUTE_GATE_LUFS]
    final = final[final > gate]
    if final.size == 0:
        return 0.0
    low, high = np.percentile(final, [LRA_LOW_PERCENTILE, LRA_HIGH_PERCENTILE])
    return float(high - low)


# -- true peak -------------------------------------------------------------------------------

def oversample(samples: npt.ArrayLike, sample_rate: float) -> tuple[FloatArray, int]:
    """The signal on the true-peak meter's whole fine grid: ``(y[frames * factor, ch],
    factor)`` (slow; the meter itself computes only where a peak can be, see
    :mod:`greetkit.truepeak`). Output sample ``k * factor`` is aligned with input ``k``."""
    x = as_float_frames(samples)
    factor = oversampling_factor(sample_rate)
    h = truepeak.interpolator(factor)
    # resample_poly scales the taps by ``factor`` itself, in place: hand it a copy.
    y: FloatArray = signal.resample_poly(x, factor, 1, axis=0, window=h.copy())
    return y, factor


def true_peak(samples: npt.ArrayLike, sample_rate: float) -> float:
    """Maximum true-peak level over all channels, dBTP (BS.1770 Annex 2, EBU Tech 3341).

    Oversampled (>= 192 kHz everywhere a peak can be, >= 384 kHz around candidates),
    absolute value, maximum, refined between grid points, 20 log10 (see
    :mod:`greetkit.truepeak`). ``-inf`` for an all-zero signal. No 12.04 dB attenuation is
    needed: the computation is in floating point.

    >>> t = np.arange(48000) / 48000  # a -6 dB tone at fs/4 sampled at +-45 degrees
    >>> tone = 0.5 * np.hanning(48000) * np.sin(2 * np.pi * 12000 * t + np.pi / 4)
    >>> round(20 * math.log10(np.max(np.abs(tone))), 2), round(true_peak(tone, 48000), 2)
    (-9.03, -6.02)
    """
    return _db(TruePeakMeter(_frames(samples), sample_rate).peak())


def _db(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0.0 else -math.inf


# -- the meter -------------------------------------------------------------------------------

def measure(samples: npt.ArrayLike, sample_rate: float,
            weights: Sequence[float] | None = None, *, peak: bool = True) -> LoudnessReport:
    """Integrated loudness, LRA, max momentary / short-term loudness and true peak.

    ``weights`` overrides the BS.1770 channel weights (see :func:`channel_weights`).
    ``peak=False`` skips the true-peak meter (the costly part: oversampling) and reports
    ``nan`` for it.
    See the module docstring for the short-clip and silence policies.

    >>> t = np.arange(10 * 48000) / 48000
    >>> tone = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    >>> round(measure(np.stack([tone, tone], axis=1), 48000).integrated_lufs, 1)
    -23.0
    """
    x = _frames(samples)
    if x.shape[0] == 0:
        return LoudnessReport(-math.inf, 0.0, -math.inf, -math.inf, -math.inf,
                              ("silent", "short-clip"))
    g = np.asarray(weights, dtype=np.float64) if weights is not None else \
        channel_weights(x.shape[1])
    if g.shape != (x.shape[1],):
        raise ValueError(f"{len(g)} channel weights for {x.shape[1]} channels")
    sums, lengths, mean_square = _k_weighted_powers(x, sample_rate)
    whole = float(mean_square @ g)  # the whole clip as one block
    warnings: list[str] = []

    blocks = _window_powers(sums, lengths, SEGMENTS_PER_BLOCK, g)
    if blocks.size == 0:
        # Policy: shorter than one 400 ms gating block -> the whole clip is the one block.
        warnings.append("short-clip")
        blocks = np.array([whole])
    integrated = gated_loudness(blocks)
    max_momentary = float(np.max(_lufs(blocks)))

    short = _window_powers(sums, lengths, SHORT_TERM_SEGMENTS, g)
    if short.size == 0:
        # Policy: shorter than the 3 s window -> max short-term over the whole clip, LRA 0.
        max_short = float(_lufs(whole))
        lra = 0.0
    else:
        max_short = float(np.max(_lufs(short)))
        lra = loudness_range(short)

    if math.isinf(integrated):
        warnings.append("silent")
    return LoudnessReport(
        integrated_lufs=integrated,
        lra=lra,
        max_momentary_lufs=max_momentary,
        max_short_term_lufs=max_short,
        true_peak_db=true_peak(x, sample_rate) if peak else math.nan,
        warnings=tuple(warnings),
    )


def measure_file(path: str | os.PathLike[str]) -> LoudnessReport:
    """:func:`measure` of any file libsndfile can decode (WAV, FLAC, OGG, MP3 ...).

    Raises :class:`~greetkit.errors.AudioError` naming the file if it cannot be read.
    """
    import soundfile as sf

    from greetkit.errors import AudioError

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file; give an audio file")
    try:
        # float32 halves memory on long files; the meters widen to float64 chunk by chunk.
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        # libsndfile's own words, without soundfile's "Error opening '<path>': " prefix
        reason = getattr(exc, "error_string", None) or (
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise AudioError(f"{path}: cannot read audio ({reason})") from exc
    return measure(samples, rate)


def integrated_loudness(samples: npt.ArrayLike, sample_rate: float) -> float:
    """Integrated loudness only (LUFS), same policies as :func:`measure`, no true peak."""
    x = _frames(samples)
    if x.shape[0] == 0:
        return -math.inf
    g = channel_weights(x.shape[1])
    sums, lengths, mean_square = _k_weighted_powers(x, sample_rate)
    blocks = _window_powers(sums, lengths, SEGMENTS_PER_BLOCK, g)
    if blocks.size == 0:
        blocks = np.array([float(mean_square @ g)])
    return gated_loudness(blocks)


# -- true-peak limiter -----------------------------------------------------------------------

def _limiter_gain(envelope: FloatArray, threshold_db: float, half: int, release: float
                  ) -> FloatArray:
    """Smooth gain curve keeping ``envelope * gain`` <= the threshold (see :func:`limit`).

    The limiter acts on a few per cent of a clip's samples, so the per-sample work is done
    where it is needed: the look-ahead minimum only around samples over the threshold, the
    release follower's running maximum only on those, and the full-length passes (the
    decay, dB to gain, the moving average) only from the first of them on.
    """
    n = envelope.size
    ceiling = 10.0 ** (threshold_db / 20.0)
    over = np.flatnonzero(envelope > ceiling)
    need_over = ceiling / envelope[over]
    keep = need_over < 1.0
    over, need_over = over[keep], need_over[keep]
    if over.size == 0:
        return np.ones(n)
    # (1) Look-ahead: the minimum over +-half samples, so the gain is down before a peak.
    # It is under 1 only within +-half of a sample over the threshold (the support); it is
    # computed per stretch of the support from the need (1 elsewhere) around it.
    breaks = np.flatnonzero(np.diff(over) > 2 * half)
    first_of = np.concatenate([[0], breaks + 1])
    last_of = np.concatenate([breaks, [over.size - 1]])
    support, m_support = [], []
    for i0, i1 in zip(first_of, last_of, strict=True):
        s0, s1 = int(over[i0]), int(over[i1])
        lo, hi = max(0, s0 - half), min(n, s1 + half + 1)
        ctx_lo, ctx_hi = max(0, lo - half), min(n, hi + half)
        need = np.ones(ctx_hi - ctx_lo)
        need[over[i0:i1 + 1] - ctx_lo] = need_over[i0:i1 + 1]
        m = ndimage.minimum_filter1d(need, 2 * half + 1, mode="nearest")
        support.append(np.arange(lo, hi))
        m_support.append(m[lo - ctx_lo:hi - ctx_lo])
    where = np.concatenate(support)
    # (2) Release, exponential in dB with time constant ``release`` samples. The follower
    # e[n] = max(u[n], e[n-1] exp(-1/T)) on the reduction u = -dB(m) >= 0 is, in closed
    # form, exp(max_k<=n (log u[k] + k/T) - n/T): one cumulative max, no Python loop. u is
    # 0 off the support, so the maximum only changes on it and is carried between.
    u = -20.0 * np.log10(np.concatenate(m_support))
    first = int(where[0])
    rate = 1.0 / release
    running = np.maximum.accumulate(np.log(u) + where * rate)
    # Between support samples the follower only decays: its value m samples after support
    # sample j is exp(running[j] - where[j] / T) exp(-m / T), so the exponential is taken
    # once per support sample plus one table of exp(-m / T) as long as the longest gap.
    lengths = np.diff(np.append(where, n))
    since = np.arange(n - first) - np.repeat(where - first, lengths)
    follower = np.exp(-rate * np.arange(int(lengths.max())))[since]
    follower *= np.repeat(np.exp(running - where * rate), lengths)
    follower[where - first] = np.maximum(follower[where - first], u)
    # dB reduction to gain: 10^(-f/20), less 1 (the average below works on the difference).
    follower *= -math.log(10.0) / 20.0
    held_less_1 = np.expm1(follower, out=follower)
    # (3) Attack: a moving average over the same +-half samples. Every value averaged at n
    # is a minimum over a window that contains n, so the average stays <= need[n].
    # (Clamping the average to ``held`` would re-introduce the steps it removes.) Before
    # the support's first sample - half the average is of ones. Edges repeat the end value
    # (as ndimage's mode "nearest"). Window sums by a cumulative sum of (held - 1): exact
    # to ~1e-13 and O(n), written into one buffer laid out as
    # [0, edge - 1 before the signal, zeros up to ``first``, held - 1, the last repeated].
    width = 2 * half + 1
    lo = max(0, first - half)
    start = lo - half
    edge = 0.0 if first > 0 else float(held_less_1[0])
    lead, gap = max(0, -start), first - max(start, 0)
    body = np.empty(1 + lead + gap + held_less_1.size + half)
    body[0] = 0.0
    body[1:1 + lead] = edge
    body[1 + lead:1 + lead + gap] = 0.0
    body[1 + lead + gap:1 + lead + gap + held_less_1.size] = held_less_1
    body[1 + lead + gap + held_less_1.size:] = held_less_1[-1]
    sums = np.cumsum(body, out=body)
    gain = np.empty(n)
    gain[:lo] = 1.0
    window = gain[lo:]
    np.subtract(sums[width:width + n - lo], sums[:n - lo], out=window)
    window /= width
    window += 1.0
    return gain


def limit(samples: npt.ArrayLike, sample_rate: float, ceiling_db: float, *,
          lookahead_ms: float = 3.0, release_ms: float = 80.0,
          margin_db: float = 0.05) -> tuple[FloatArray, float]:
    """Look-ahead true-peak limiter. Returns ``(output, max gain reduction dB)``.

    The gain needed at each sample, r = min(1, ceiling / true-peak envelope), is
    (1) spread by a sliding minimum over +-``lookahead_ms``, so the gain is already down
    when the peak arrives; (2) released exponentially in dB with time constant
    ``release_ms``, so it does not pump between syllables; (3) smoothed by a moving
    average over +-``lookahead_ms`` (the attack ramp), which keeps it <= r everywhere.
    The envelope is the oversampled (true) peak, so the *true* peak is what is held. The
    output is re-measured and, if a gain slope lifted an inter-sample peak over, the
    threshold is lowered by the excess: the returned signal's true peak is <= ``ceiling_db``.
    Offline on the whole clip, so the look-ahead costs no latency. Output is
    ``(frames, channels)`` float64.
    """
    x = as_float_frames(samples)
    if x.shape[0] == 0:
        return x, 0.0
    meter = TruePeakMeter(x, sample_rate)
    threshold_db = ceiling_db - margin_db
    half = max(1, round(lookahead_ms * 1e-3 * sample_rate))
    release = max(1.0, release_ms * 1e-3 * sample_rate)
    out, reduction = x, 0.0
    for _ in range(8):
        env = meter.envelope_at_least(10.0 ** (threshold_db / 20.0))
        gain = _limiter_gain(env, threshold_db, half, release)
        out = x * gain[:, None]
        reduction = float(-20.0 * np.log10(np.min(gain)))
        # The output's true peak, bounded block by block from the input's (same value).
        over = _db(meter.derived(out, gain).peak()) - ceiling_db
        if over <= 0.0:
            break
        threshold_db -= over + 0.01
    return out, reduction


# -- normalization -----------------------------------------------------------------------

@dataclass(frozen=True)
class Normalized:
    """:func:`normalize_gain`'s result: ``samples = input * gain[:, None]``, and a meter of
    ``samples`` whose true peak is measured (``report.true_peak_db``): a later stage checks
    its own output's true peak from it (:meth:`TruePeakMeter.derived`), re-oversampling
    only the blocks near that peak."""

    samples: FloatArray  # (frames, channels) float64
    gain: FloatArray  # (frames,): the static gain times the limiter's gain curve
    report: NormalizeReport
    meter: TruePeakMeter


def normalize(samples: npt.ArrayLike, sample_rate: float, target_lufs: float,
              ceiling_db: float, *, tolerance_lu: float = 0.01,
              lookahead_ms: float = 3.0, release_ms: float = 80.0,
              margin_db: float = 0.05) -> tuple[FloatArray, NormalizeReport]:
    """Bring integrated loudness to ``target_lufs`` with true peak <= ``ceiling_db``.

    Static gain first: loudness and true peak both scale exactly with it. If the peak
    would cross the ceiling, the true-peak limiter (:func:`limit`) takes the excess and the
    gain is re-solved (secant steps inside a bracket) on "integrated loudness of the
    limited signal", which rises monotonically with gain, until it is within
    ``tolerance_lu`` of the target; then the true peak of the result is verified and, if
    it is over, the limiter threshold is lowered and the gain solved again.
    Silent input is returned unchanged with the warning ``silent``.

    Returns ``(out, report)``, ``out`` shaped ``(frames, channels)`` float64.

    >>> t = np.arange(48000) / 48000
    >>> speechy = np.sin(2 * np.pi * 200 * t) * (0.05 + np.sin(2 * np.pi * 3 * t) ** 8)
    >>> out, rep = normalize(speechy, 48000, -16.0, -1.0)
    >>> round(integrated_loudness(out, 48000), 2), true_peak(out, 48000) <= -1.0
    (-16.0, True)
    """
    result = normalize_gain(samples, sample_rate, target_lufs, ceiling_db,
                            tolerance_lu=tolerance_lu, lookahead_ms=lookahead_ms,
                            release_ms=release_ms, margin_db=margin_db)
    return result.samples, result.report


def normalize_gain(samples: npt.ArrayLike, sample_rate: float, target_lufs: float,
                   ceiling_db: float, *, tolerance_lu: float = 0.01,
                   lookahead_ms: float = 3.0, release_ms: float = 80.0,
                   margin_db: float = 0.05, meter: TruePeakMeter | None = None
                   ) -> Normalized:
    """:func:`normalize`, also returning the per-frame gain it applied, so a caller can
    check later stages' true peak from ``meter`` (a :class:`TruePeakMeter` of ``samples``,
    made here if not given) without measuring from scratch: the input's true peak is
    measured once and every later check (after the limiter, after dither) oversamples only
    the blocks that can reach the ceiling (:meth:`TruePeakMeter.derived`)."""
    x = as_float_frames(samples)
    base = integrated_loudness(x, sample_rate)
    if meter is None:
        meter = TruePeakMeter(x, sample_rate)
    warnings: list[str] = []
    if x.shape[0] and x.shape[0] < sample_rate * BLOCK_SECONDS:
        warnings.append("short-clip")
    if math.isinf(base):
        warnings.append("silent")
        return Normalized(x, np.ones(x.shape[0]), NormalizeReport(
            0.0, 0.0, base, _db(meter.peak()), tuple(warnings)), meter)
    gain_db = target_lufs - base
    # The sample peak is a floor of the true peak: if it already crosses, the limiter will
    # act and its envelope (computed next) covers the peak's search, so skip it here.
    peak = _db(meter.sample_peak)
    if peak + gain_db <= ceiling_db:
        peak = _db(meter.peak())
        if peak + gain_db <= ceiling_db:
            g = 10.0 ** (gain_db / 20.0)
            weights = np.full(x.shape[0], g)
            out = x * g
            return Normalized(out, weights, NormalizeReport(
                gain_db, 0.0, base + gain_db, peak + gain_db, tuple(warnings)),
                meter.derived(out, weights))

    # The envelope scales with the gain, so it is computed once (by the meter).
    half = max(1, round(lookahead_ms * 1e-3 * sample_rate))
    release = max(1.0, release_ms * 1e-3 * sample_rate)

    def run(g_db: float, threshold_db: float) -> tuple[FloatArray, float, float]:
        g = 10.0 ** (g_db / 20.0)
        env = meter.envelope_at_least(10.0 ** (threshold_db / 20.0) / g)
        gain = _limiter_gain(env * g, threshold_db, half, release)
        curve = g * gain
        level = integrated_loudness(x * curve[:, None], sample_rate)
        return curve, level, float(-20.0 * np.log10(np.min(gain)))

    threshold = ceiling_db - margin_db
    converged = False
    curve, level, reduction, final_peak = np.ones(x.shape[0]), base, 0.0, peak
    out, checked = x, meter
    for _ in range(6):  # threshold corrections (rare: an inter-sample peak lifted over)
        curve, level, reduction = run(gain_db, threshold)
        gain_db, curve, level, reduction, converged = _solve_gain(
            run, gain_db, threshold, curve, level, reduction, target_lufs, tolerance_lu)
        out = x * curve[:, None]
        checked = meter.derived(out, curve)
        final_peak = _db(checked.peak())
        if final_peak <= ceiling_db:
            break
        threshold -= final_peak - ceiling_db + 0.01
    if not converged:
        warnings.append("loudness-not-converged")
    if reduction > HEAVY_LIMITING_DB:
        warnings.append(f"heavy-limiting: the limiter took {reduction:.1f} dB; use a less "
                        "peaky take or a lower loudness target")
    return Normalized(out, curve, NormalizeReport(gain_db, reduction, level, final_peak,
                                                  tuple(warnings)), checked)


def _solve_gain(run: Callable[[float, float], tuple[FloatArray, float, float]],
                gain_db: float, threshold: float, out: FloatArray, level: float,
                reduction: float, target: float, tolerance: float
                ) -> tuple[float, FloatArray, float, float, bool]:
    """Secant iteration on gain until ``run``'s loudness is within ``tolerance`` of
    ``target``, falling back to bisection once the root is bracketed."""
    lo: float | None = None  # largest gain known to be too quiet
    hi: float | None = None  # smallest gain known to be too loud
    prev: tuple[float, float] | None = None
    for _ in range(30):
        error = level - target
        if abs(error) <= tolerance:
            return gain_db, out, level, reduction, True
        if error < 0:
            lo = gain_db if lo is None else max(lo, gain_db)
        else:
            hi = gain_db if hi is None else min(hi, gain_db)
        step = -error
        if prev is not None and prev[0] != gain_db:
            slope = (level - prev[1]) / (gain_db - prev[0])
            if slope > 0.05:
                step = -error / slope
        new = gain_db + step
        if lo is not None and hi is not None and not lo < new < hi:
            new = 0.5 * (lo + hi)
        prev = (gain_db, level)
        gain_db = new
        out, level, reduction = run(gain_db, threshold)
    return gain_db, out, level, reduction, abs(level - target) <= tolerance
