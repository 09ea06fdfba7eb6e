"""The per-clip DSP chain (greetkit/dsp.py): stages and ``process`` on synthesized audio and
real espeak-ng speech, plus an independent check of the delivered files with ffmpeg's
``ebur128`` meter when ffmpeg is installed."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from speech_clips import SpeechClip, render_clips

from greetkit import dsp
from greetkit.dsp import DspParams, ProcessedAudio, process
from greetkit.errors import AudioError
from greetkit.loudness import integrated_loudness, measure, true_peak

Array = npt.NDArray[np.float64]


def burst(rate: int, *, lead: float = 1.0, body: float = 1.5, tail: float = 1.0,
          floor_dbfs: float | None = None, seed: int = 0) -> Array:
    """A syllable-like 220 Hz harmonic burst with ``lead``/``tail`` seconds of silence
    (or of white noise at ``floor_dbfs``, like an MP3 or a noisy take)."""
    rng = np.random.default_rng(seed)
    n_lead, n_body, n_tail = (round(s * rate) for s in (lead, body, tail))
    t = np.arange(n_body) / rate
    voiced = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))
    envelope = np.sin(np.pi * np.arange(n_body) / n_body) ** 0.5 * (
        0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    x = np.concatenate([np.zeros(n_lead), 0.3 * voiced * envelope, np.zeros(n_tail)])
    if floor_dbfs is not None:
        x += 10 ** (floor_dbfs / 20) * rng.standard_normal(x.size) / math.sqrt(2)
    return x


def seconds(out: ProcessedAudio) -> float:
    return float(out.pcm.shape[0]) / out.sample_rate


# -- process -----------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
def test_output_is_int16_mono_at_the_output_rate_and_target(rate: int) -> None:
    """Any engine rate in, 48 kHz mono int16 out, at the target within 0.05 LU and under
    the ceiling, both as measured on the int16 samples themselves."""
    out = process(burst(rate), rate, DspParams(), seed=1)
    assert out.pcm.dtype == np.int16 and out.pcm.ndim == 1 and out.sample_rate == 48000
    report = measure(out.pcm, 48000)
    assert report.integrated_lufs == pytest.approx(-18.0, abs=0.05)
    assert report.true_peak_db <= -1.5
    assert (out.lufs, out.true_peak_db) == (report.integrated_lufs, report.true_peak_db)


def test_other_output_rates_and_targets() -> None:
    """A 24 kHz variant at the telephony preset is made from the source audio directly."""
    params = DspParams(target_lufs=-26.0, true_peak_ceiling_db=-3.0, sample_rate=24000)
    out = process(burst(22050), 22050, params, seed=1)
    assert out.sample_rate == 24000
    assert integrated_loudness(out.pcm, 24000) == pytest.approx(-26.0, abs=0.05)
    assert true_peak(out.pcm, 24000) <= -3.0


def test_stereo_is_mixed_to_mono() -> None:
    """(frames, 2) input comes out as one channel with the content of both."""
    left = burst(48000)
    out = process(np.stack([left, np.zeros_like(left)], axis=1).astype(np.float32), 48000,
                  DspParams(), seed=1)
    assert out.pcm.ndim == 1
    assert integrated_loudness(out.pcm, 48000) == pytest.approx(-18.0, abs=0.05)


def test_silence_is_trimmed_to_the_pad() -> None:
    """1 s of digital silence either side of 1.5 s of sound: the output is the sound plus
    about 80 ms of pad at each end (10 ms trim resolution)."""
    out = process(burst(48000), 48000, DspParams(), seed=1)
    assert seconds(out) == pytest.approx(1.5 + 2 * 0.080, abs=0.03)
    short_pad = process(burst(48000), 48000, DspParams(pad_ms=20.0), seed=1)
    assert seconds(short_pad) == pytest.approx(1.5 + 2 * 0.020, abs=0.03)


@pytest.mark.parametrize("floor_dbfs", [-80.0, -60.0, -50.0])
def test_trim_sees_through_a_noise_floor(floor_dbfs: float) -> None:
    """A hiss floor (MP3/espeak-like, -80..-50 dBFS) in the silent parts is trimmed like
    silence: the threshold is relative to the clip's level and its floor."""
    x = burst(22050, floor_dbfs=floor_dbfs)
    out = process(x, 22050, DspParams(), seed=1)
    assert seconds(out) == pytest.approx(1.5 + 2 * 0.080, abs=0.05)


def test_quiet_start_of_speech_is_kept() -> None:
    """A soft onset 30 dB under the body is speech, not silence: it is kept."""
    rate = 48000
    body = burst(rate, lead=0.0, tail=0.0)
    onset = 0.3 * 10 ** (-30 / 20) * np.sin(2 * np.pi * 300 * np.arange(rate // 5) / rate)
    x = np.concatenate([np.zeros(rate), onset, body, np.zeros(rate)])
    out = process(x, rate, DspParams(), seed=1)
    assert seconds(out) == pytest.approx(0.2 + 1.5 + 2 * 0.080, abs=0.03)


def test_same_seed_same_bytes_other_seed_other_dither() -> None:
    """Dither is seeded: same inputs and seed give identical bytes; another seed changes
    only the dither (loudness identical within 0.01 LU)."""
    x = burst(22050)
    a = process(x, 22050, DspParams(), seed=7)
    b = process(x, 22050, DspParams(), seed=7)
    c = process(x, 22050, DspParams(), seed=8)
    assert a.pcm.tobytes() == b.pcm.tobytes()
    assert a.pcm.tobytes() != c.pcm.tobytes()
    assert np.max(np.abs(a.pcm.astype(int) - c.pcm.astype(int))) <= 2
    assert a.lufs == pytest.approx(c.lufs, abs=0.01)


def test_fades_start_and_end_at_zero() -> None:
    """The first and last samples are dither only (|x| <= 1 LSB): no click at play."""
    x = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 0.5  # no silence to trim
    out = process(x, 48000, DspParams(), seed=1)
    assert abs(int(out.pcm[0])) <= 1 and abs(int(out.pcm[-1])) <= 1
    assert np.max(np.abs(out.pcm[200:400])) > 1000  # past the 5 ms fade it is loud


def test_peaky_audio_is_limited_and_reported() -> None:
    """A clip whose gain would push the peak over gets limited: limiter_db > 0, peak held."""
    x = 0.1 * burst(48000)  # needs ~+18 dB of gain
    x[60000:60020] += 0.3  # a click: 20 samples far above the speech
    out = process(x, 48000, DspParams(), seed=1)
    assert out.limiter_db > 1.0
    assert out.true_peak_db <= -1.5
    assert out.lufs == pytest.approx(-18.0, abs=0.05)


def test_heavy_limiting_is_flagged_light_limiting_is_not() -> None:
    """More than 6 dB of limiter gain reduction adds a 'heavy-limiting' warning naming the
    amount; a clip limited by less (or not at all) carries no such warning."""
    light = 0.1 * burst(48000)
    light[60000:60020] += 0.1
    heavy = 0.1 * burst(48000)
    heavy[60000:60020] += 0.95  # a click ~20 dB above the speech peaks
    light_out = process(light, 48000, DspParams(), seed=1)
    heavy_out = process(heavy, 48000, DspParams(), seed=1)
    assert 0 < light_out.limiter_db <= 6.0
    assert not any(w.startswith("heavy-limiting") for w in light_out.warnings)
    assert heavy_out.limiter_db > 6.0
    (flag,) = [w for w in heavy_out.warnings if w.startswith("heavy-limiting")]
    assert f"the limiter took {heavy_out.limiter_db:.1f} dB" in flag
    assert heavy_out.true_peak_db <= -1.5


def test_short_clip_is_processed_with_a_warning() -> None:
    """A 0.2 s sound (trimmed clip < 0.4 s) is normalized by the one-block policy and
    flagged 'short-clip'."""
    x = burst(48000, lead=0.3, body=0.2, tail=0.3)
    out = process(x, 48000, DspParams(), seed=1)
    assert "short-clip" in out.warnings
    assert out.lufs == pytest.approx(-18.0, abs=0.05)


@pytest.mark.parametrize("samples, message", [
    (np.zeros(0, dtype=np.float32), "empty"),
    (np.zeros(48000, dtype=np.float32), "silent"),
    (np.full(4800, 1e-6, dtype=np.float32), "silent"),
    (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),
    # 5 Hz at -40 dBFS: above the trim floor, but K-weighting leaves nothing to measure.
    (0.01 * np.sin(2 * np.pi * 5 * np.arange(48000) / 48000), "silent after trimming"),
])
def test_empty_silent_or_broken_audio_is_an_audio_error(samples: Array, message: str) -> None:
    """Nothing to deliver: a clear AudioError (also a ValueError), never a crash."""
    with pytest.raises(AudioError, match=message) as info:
        process(samples, 48000, DspParams(), seed=0)
    assert isinstance(info.value, ValueError)


def test_key_names_everything_that_changes_bytes() -> None:
    """key() holds every field plus the chain version; changing any field changes it."""
    params = DspParams()
    key = params.key()
    assert key["chain_version"] == dsp.CHAIN_VERSION
    assert {f.name for f in dataclasses.fields(DspParams)} <= set(key)
    for field in dataclasses.fields(DspParams):
        value = getattr(params, field.name)
        other: object = "HQ" if isinstance(value, str) else value + 1
        changed = dataclasses.replace(params, **{field.name: other})  # type: ignore[arg-type]
        assert changed.key() != key


# -- real speech, independent meter --------------------------------------------------------

@pytest.fixture(scope="module")
def clips() -> list[SpeechClip]:
    return render_clips()


@pytest.fixture(scope="module")
def processed(clips: list[SpeechClip]) -> list[tuple[SpeechClip, ProcessedAudio]]:
    return [(c, process(c.samples, c.sample_rate, DspParams(), seed=i))
            for i, c in enumerate(clips)]


def test_speech_clips_span_the_issue_range(clips: list[SpeechClip],
                                           processed: list[tuple[SpeechClip, ProcessedAudio]]
                                           ) -> None:
    """Fifty en + zh espeak clips whose delivered length spans ~0.3-8 s."""
    assert len(clips) == 50 and {c.language for c in clips} == {"en", "zh"}
    lengths = [seconds(out) for _, out in processed]
    assert min(lengths) < 0.5 and max(lengths) > 7.0


def test_speech_is_at_target_and_under_ceiling_by_our_meter(
        processed: list[tuple[SpeechClip, ProcessedAudio]]) -> None:
    """Every processed espeak clip: I within 0.05 LU of -18, TP <= -1.5 dBTP."""
    for clip, out in processed:
        assert out.lufs == pytest.approx(-18.0, abs=0.05), clip.name
        assert out.true_peak_db <= -1.5, clip.name


def test_reported_true_peak_is_a_fresh_reading_of_the_stored_samples(
        processed: list[tuple[SpeechClip, ProcessedAudio]]) -> None:
    """The chain checks the dithered int16 through bounds carried from the stages before;
    what it reports is what measuring the stored samples from scratch reads (ties between
    equal int16 peaks included), for every rate a clip is delivered at."""
    for clip, out in processed:
        assert out.true_peak_db == pytest.approx(measure(out.pcm, 48000).true_peak_db,
                                                 abs=1e-9), clip.name
    for i, (clip, _) in enumerate(processed[::5]):  # other rates: a full chain each
        for rate in (24000, 16000):
            other = process(clip.samples, clip.sample_rate, DspParams(sample_rate=rate),
                            seed=i)
            assert other.true_peak_db == pytest.approx(
                measure(other.pcm, rate).true_peak_db, abs=1e-9), (clip.name, rate)


def _ffmpeg_ebur128(path: Path) -> tuple[float, float]:
    """Integrated loudness and true peak from ffmpeg's ebur128 summary (0.1 resolution)."""
    run = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path),
                          "-af", "ebur128=peak=true", "-f", "null", "-"],
                         capture_output=True, text=True, check=True)
    summary = run.stderr[run.stderr.rindex("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    assert integrated and peak, summary
    return float(integrated.group(1)), float(peak.group(1))


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg not on PATH: the independent-meter check needs its "
                           "ebur128 filter (Debian: apt-get install ffmpeg)")
def test_independent_meter_agrees(processed: list[tuple[SpeechClip, ProcessedAudio]],
                                  tmp_path: Path) -> None:
    """ffmpeg's ebur128 (an independent BS.1770 meter) on the delivered WAVs: I within
    0.2 LU of the target for clips >= 1 s, true peak <= ceiling + 0.1 dB for all."""
    checked = 0
    for clip, out in processed:
        path = tmp_path / f"{clip.name}.wav"
        sf.write(path, out.pcm, out.sample_rate, subtype="PCM_16")
        integrated, peak = _ffmpeg_ebur128(path)
        assert peak <= -1.5 + 0.1, (clip.name, peak)
        if seconds(out) >= 1.0:
            assert abs(integrated - -18.0) <= 0.2, (clip.name, integrated)
            checked += 1
    assert checked >= 30
