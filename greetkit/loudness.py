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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from greetkit.params import DEFAULT_PRESET as DEFAULT_PRESET
from greetkit.params import LOUDNESS_PRESETS

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
# Oversampled rate the true-peak meter reaches at least (x8 at 48 kHz, Annex 2 asks >= 192k).
TRUE_PEAK_MIN_RATE = 384_000
# Taps per polyphase branch on each side of the centre in the interpolator.
_TP_HALF_TAPS = 24
_TP_KAISER_BETA = 9.0

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

def as_float_frames(samples: npt.ArrayLike) -> FloatArray:
    """``samples`` as float64 of shape ``(frames, channels)``; integer PCM scaled to +-1."""
    x = np.asarray(samples)
    if x.dtype.kind == "i":  # two's complement PCM: full scale is 2^(bits-1)
        x = x.astype(np.float64) / (float(np.iinfo(x.dtype).max) + 1.0)
    elif x.dtype.kind == "u":  # offset binary (8-bit WAV)
        half = (float(np.iinfo(x.dtype).max) + 1.0) / 2.0
        x = (x.astype(np.float64) - half) / half
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"samples must be (frames,) or (frames, channels), got {x.shape}")
    return x


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
        sq = z * z
        total += sq.sum(axis=0)
        if steps == 0:
            continue
        cum = np.concatenate([np.zeros((1, channels)), np.cumsum(sq, axis=0)])
        # Steps overlapping this chunk, clipped to it.
        first = int(np.searchsorted(bounds, c0, side="right")) - 1
        last = min(steps, int(np.searchsorted(bounds, c1, side="left")))
        if first >= last:
            continue
        js = np.arange(max(first, 0), last)
        lo = np.clip(bounds[js] - c0, 0, c1 - c0)
        hi = np.clip(bounds[js + 1] - c0, 0, c1 - c0)
        sums[js] += cum[hi] - cum[lo]
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

def oversampling_factor(sample_rate: float) -> int:
    """Oversampling used by the true-peak meter: enough to reach 384 kHz, at least x2."""
    return max(2, math.ceil(TRUE_PEAK_MIN_RATE / float(sample_rate) - 1e-9))


@lru_cache(maxsize=16)
def _interpolator(factor: int) -> FloatArray:
    """Kaiser-window sinc low-pass for x``factor`` interpolation (BS.1770 Annex 2 step 2).

    Cut-off at the input Nyquist, 2 x 24 taps per branch: flat within 0.001 dB to 0.9 of
    Nyquist; images down > 50 dB from 1.1 x Nyquist and > 90 dB from 1.2 x.
    """
    taps = 2 * _TP_HALF_TAPS * factor + 1
    h = signal.firwin(taps, 1.0 / factor, window=("kaiser", _TP_KAISER_BETA))
    return np.asarray(h, dtype=np.float64)


def oversample(samples: npt.ArrayLike, sample_rate: float) -> tuple[FloatArray, int]:
    """The signal oversampled for true-peak metering: ``(y[frames * factor, ch], factor)``.

    Output sample ``k * factor`` is aligned with input sample ``k`` (the filter's delay is
    removed), so envelopes derived from it line up with the input.
    """
    x = as_float_frames(samples)
    factor = oversampling_factor(sample_rate)
    h = _interpolator(factor)
    # resample_poly scales the taps by ``factor`` itself, in place: hand it a copy.
    y: FloatArray = signal.resample_poly(x, factor, 1, axis=0, window=h.copy())
    return y, factor


@lru_cache(maxsize=16)
def _polyphase(factor: int) -> FloatArray:
    """:func:`_interpolator` as a ``(2 * half + 1, factor)`` matrix: output row ``k`` of the
    x``factor`` signal is ``window(k) @ matrix``, ``window(k)`` being input samples
    ``k - half .. k + half``. Same taps and alignment as :func:`oversample`."""
    h = _interpolator(factor) * factor
    span = 2 * _TP_HALF_TAPS
    matrix = np.zeros((span + 1, factor))
    for d in range(span + 1):
        for p in range(factor):
            j = factor * (span - d) + p
            if j < h.size:
                matrix[d, p] = h[j]
    return matrix


def _oversample_rows(xpad: FloatArray, frames: npt.NDArray[np.intp], factor: int
                     ) -> FloatArray:
    """Oversampled values around input ``frames`` of one zero-padded channel ``xpad``
    (``_TP_HALF_TAPS`` zeros each side): shape ``frames.shape + (factor,)``. One matrix
    product per call instead of a polyphase pass over the whole signal."""
    taps = np.arange(2 * _TP_HALF_TAPS + 1)
    windows = xpad[frames[..., None] + taps]
    return np.asarray(windows @ _polyphase(factor), dtype=np.float64)


# Input frames per block in true_peak: only blocks whose bound can beat the sample peak are
# oversampled, a few at a time (bounded memory on long files).
_BLOCK_FRAMES = 256
_BLOCKS_PER_PASS = 64
_CHUNK_FRAMES = 1 << 14


def _block_bounds(x: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Per block of ``_BLOCK_FRAMES`` input frames, the largest magnitude (all channels) an
    interpolated sample in it can draw on: the block's and its neighbours' peaks (the
    interpolator's reach, half taps + 1, is under one block)."""
    n = x.shape[0]
    blocks = -(-n // _BLOCK_FRAMES)
    mag = np.zeros(blocks * _BLOCK_FRAMES)
    mag[:n] = np.max(np.abs(x), axis=1)
    block_peak = mag.reshape(blocks, _BLOCK_FRAMES).max(axis=1)
    reach = block_peak.copy()
    reach[1:] = np.maximum(reach[1:], block_peak[:-1])
    reach[:-1] = np.maximum(reach[:-1], block_peak[1:])
    return np.asarray(reach, dtype=np.float64)


def _block_rows(xpad: FloatArray, group: npt.NDArray[np.intp], n: int, factor: int
                ) -> FloatArray:
    """Oversampled values of blocks ``group`` of one padded channel, with one input frame
    of margin each side (frames start-1 .. start+B; frames off the ends read as zeros):
    shape ``(len(group), (B + 2) * factor)``."""
    frames = group[:, None] * _BLOCK_FRAMES + np.arange(-1, _BLOCK_FRAMES + 1)
    inside = (frames >= 0) & (frames < n)
    rows = _oversample_rows(xpad, np.clip(frames, 0, max(n - 1, 0)), factor)
    return np.asarray((rows * inside[..., None]).reshape(group.size, -1), dtype=np.float64)


def true_peak(samples: npt.ArrayLike, sample_rate: float) -> float:
    """Maximum true-peak level over all channels, dBTP (BS.1770 Annex 2, EBU Tech 3341).

    Oversampled to >= 384 kHz, absolute value, maximum, refined between grid points,
    20 log10. ``-inf`` for an all-zero signal. No 12.04 dB attenuation is needed:
    the computation is in floating point.

    >>> t = np.arange(48000) / 48000  # a -6 dB tone at fs/4 sampled at +-45 degrees
    >>> tone = 0.5 * np.hanning(48000) * np.sin(2 * np.pi * 12000 * t + np.pi / 4)
    >>> round(20 * math.log10(np.max(np.abs(tone))), 2), round(true_peak(tone, 48000), 2)
    (-9.03, -6.02)
    """
    x = _frames(samples)
    if x.shape[0] == 0 or not np.any(x):
        return -math.inf
    n, channels = x.shape
    factor = oversampling_factor(sample_rate)
    # Cheap bound first: an interpolated sample is a weighted sum of the input samples in
    # reach, so it cannot exceed their largest magnitude times the largest L1 norm of a
    # polyphase branch. The sample peak is a floor of the true peak, so a block whose
    # bound is under the peak found so far is never oversampled; the rest are visited
    # loudest bound first and oversampled exactly (the result is the same as one pass).
    bound = _block_bounds(x) * _branch_gain(factor)
    peak = float(np.max(np.abs(x)))
    order = np.argsort(-bound, kind="stable")
    order = order[bound[order] > peak]
    pads = [np.concatenate([np.zeros(_TP_HALF_TAPS), np.asarray(x[:, c], np.float64),
                            np.zeros(_TP_HALF_TAPS)]) for c in range(channels)]
    for first in range(0, order.size, _BLOCKS_PER_PASS):
        group = order[first:first + _BLOCKS_PER_PASS]
        if float(bound[group[0]]) <= peak:
            break
        for xpad in pads:
            rows = _block_rows(xpad, group, n, factor)
            peak = max(peak, _refined_block_peak(np.abs(rows), factor))
    return 20.0 * math.log10(peak)


def _refined_block_peak(mag: FloatArray, factor: int) -> float:
    """Largest value over rows of ``mag`` (one block each, with ``factor`` values of margin
    at both ends), refined by a parabola through it and its neighbours (the oversampled
    grid can sit up to half a step off the analog peak)."""
    inner = mag[:, factor:mag.shape[1] - factor]
    flat = int(np.argmax(inner))
    row, col = divmod(flat, inner.shape[1])
    i = col + factor
    peak = float(mag[row, i])
    left, right = float(mag[row, i - 1]), float(mag[row, i + 1])
    curvature = left - 2.0 * peak + right
    # Only at a local maximum, and not at a corner of |y| at a zero crossing.
    if curvature < 0.0 and peak >= left and peak >= right:
        peak = max(peak, peak - 0.125 * (left - right) ** 2 / curvature)
    return peak


@lru_cache(maxsize=16)
def _branch_gain(factor: int) -> float:
    """Largest L1 norm over the interpolator's polyphase branches (its peak gain bound)."""
    h = _interpolator(factor) * factor
    return float(max(np.abs(h[p::factor]).sum() for p in range(factor))) * (1.0 + 1e-9)


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

class _Envelope:
    """Per input sample, the largest oversampled magnitude (all channels) within about one
    input sample of it: the true-peak envelope a limiter keeps under its threshold.

    ``at_least(level)`` returns per input sample the envelope, exact in every block whose
    cheap bound (see :func:`true_peak`) exceeds ``level`` and 0 elsewhere: where the bound
    is under the level the exact value is too, so a limiter asking "where is the envelope
    over my threshold" gets the same answer. Blocks are oversampled once and cached.
    """

    def __init__(self, x: FloatArray, sample_rate: float) -> None:
        self.x, self.n = x, x.shape[0]
        self.factor = oversampling_factor(sample_rate)
        self.bound = _block_bounds(x) * _branch_gain(self.factor)
        self.env = np.zeros(self.bound.size * _BLOCK_FRAMES)
        self.level = math.inf  # every block with bound > level is exact
        self.pads = [np.concatenate([np.zeros(_TP_HALF_TAPS), x[:, c], np.zeros(_TP_HALF_TAPS)])
                     for c in range(x.shape[1])]

    def at_least(self, level: float) -> FloatArray:
        if level < self.level:
            todo = np.flatnonzero((self.bound > level) & (self.bound <= self.level))
            f, b = self.factor, _BLOCK_FRAMES
            for first in range(0, todo.size, _BLOCKS_PER_PASS):
                group = todo[first:first + _BLOCKS_PER_PASS]
                mag = np.zeros((group.size, (b + 2) * f))
                for xpad in self.pads:
                    mag = np.maximum(mag, np.abs(_block_rows(xpad, group, self.n, f)))
                # Row j is oversampled index (a - 1) f + j; sample a + i takes indices
                # (a + i) f - f//2 .. (a + i + 2) f - f//2 - 1, so both neighbours see a peak.
                cells = mag[:, f - f // 2:f - f // 2 + (b + 1) * f].reshape(
                    group.size, b + 1, f).max(axis=2)
                env = np.maximum(cells[:, :b], cells[:, 1:])
                idx = group[:, None] * b + np.arange(b)
                self.env[idx] = env
            self.level = level
        return self.env[:self.n]


def _limiter_gain(envelope: FloatArray, threshold_db: float, half: int, release: float
                  ) -> FloatArray:
    """Smooth gain curve keeping ``envelope * gain`` <= the threshold (see :func:`limit`)."""
    ceiling = 10.0 ** (threshold_db / 20.0)
    need = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-30))
    if np.all(need >= 1.0):
        return np.ones_like(envelope)
    # (1) Look-ahead: the minimum over +-half samples, so the gain is down before a peak.
    m = ndimage.minimum_filter1d(need, 2 * half + 1, mode="nearest")
    # (2) Release, exponential in dB with time constant ``release`` samples. The follower
    # e[n] = max(u[n], e[n-1] exp(-1/T)) on the reduction u = -dB(m) >= 0 is, in closed
    # form, exp(max_k<=n (log u[k] + k/T) - n/T): one cumulative max, no Python loop.
    u = -20.0 * np.log10(m)
    ramp = np.arange(u.size) / release
    with np.errstate(divide="ignore"):
        follower = np.exp(np.maximum.accumulate(np.log(u) + ramp) - ramp)
    held = 10.0 ** (-np.maximum(follower, u) / 20.0)
    # (3) Attack: a moving average over the same +-half samples. Every value averaged at n
    # is a minimum over a window that contains n, so the average stays <= need[n].
    # (Clamping the average to ``held`` would re-introduce the steps it removes.)
    gain = ndimage.uniform_filter1d(held, 2 * half + 1, mode="nearest")
    return np.asarray(gain, dtype=np.float64)


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
    return _limit_verified(x, sample_rate, _Envelope(x, sample_rate),
                           ceiling_db - margin_db, ceiling_db, lookahead_ms, release_ms)


def _limit_verified(x: FloatArray, sample_rate: float, envelope: _Envelope,
                    threshold_db: float, ceiling_db: float, lookahead_ms: float,
                    release_ms: float) -> tuple[FloatArray, float]:
    half = max(1, round(lookahead_ms * 1e-3 * sample_rate))
    release = max(1.0, release_ms * 1e-3 * sample_rate)
    out, reduction = x, 0.0
    for _ in range(8):
        env = envelope.at_least(10.0 ** (threshold_db / 20.0))
        gain = _limiter_gain(env, threshold_db, half, release)
        out = x * gain[:, None]
        reduction = float(-20.0 * np.log10(np.min(gain)))
        over = true_peak(out, sample_rate) - ceiling_db
        if over <= 0.0:
            break
        threshold_db -= over + 0.01
    return out, reduction


# -- normalization -----------------------------------------------------------------------

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
    x = as_float_frames(samples)
    base = integrated_loudness(x, sample_rate)
    warnings: list[str] = []
    if x.shape[0] and x.shape[0] < sample_rate * BLOCK_SECONDS:
        warnings.append("short-clip")
    if math.isinf(base):
        warnings.append("silent")
        return x, NormalizeReport(0.0, 0.0, base, true_peak(x, sample_rate), tuple(warnings))
    peak = true_peak(x, sample_rate)
    gain_db = target_lufs - base
    if peak + gain_db <= ceiling_db:
        return x * 10.0 ** (gain_db / 20.0), NormalizeReport(
            gain_db, 0.0, base + gain_db, peak + gain_db, tuple(warnings))

    # The envelope scales with the gain, so it is computed once, here.
    envelope = _Envelope(x, sample_rate)
    half = max(1, round(lookahead_ms * 1e-3 * sample_rate))
    release = max(1.0, release_ms * 1e-3 * sample_rate)

    def run(g_db: float, threshold_db: float) -> tuple[FloatArray, float, float]:
        g = 10.0 ** (g_db / 20.0)
        env = envelope.at_least(10.0 ** (threshold_db / 20.0) / g)
        gain = _limiter_gain(env * g, threshold_db, half, release)
        limited = x * (g * gain)[:, None]
        level = integrated_loudness(limited, sample_rate)
        return limited, level, float(-20.0 * np.log10(np.min(gain)))

    threshold = ceiling_db - margin_db
    converged = False
    out, level, reduction, final_peak = x, base, 0.0, peak
    for _ in range(6):  # threshold corrections (rare: an inter-sample peak lifted over)
        out, level, reduction = run(gain_db, threshold)
        gain_db, out, level, reduction, converged = _solve_gain(
            run, gain_db, threshold, out, level, reduction, target_lufs, tolerance_lu)
        final_peak = true_peak(out, sample_rate)
        if final_peak <= ceiling_db:
            break
        threshold -= final_peak - ceiling_db + 0.01
    if not converged:
        warnings.append("loudness-not-converged")
    if reduction > HEAVY_LIMITING_DB:
        warnings.append(f"heavy-limiting: the limiter took {reduction:.1f} dB; use a less "
                        "peaky take or a lower loudness target")
    return out, NormalizeReport(gain_db, reduction, level, final_peak, tuple(warnings))


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
