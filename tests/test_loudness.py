"""The BS.1770 / EBU meter, true peak, limiter and normalize (greetkit/loudness.py), and the
``greetkit loudness`` command (greetkit/commands/loudness.py).

Compliance signals are synthesized from the written definitions in EBU Tech 3341 (2016)
and Tech 3342 (2016); nothing is downloaded. Every case runs at 48 kHz and at the 16,
22.05, 24 and 44.1 kHz input rates greetkit's engines produce.

Adaptations, as the standards allow:

* Tech 3341 cases 1-6 and Tech 3342 cases 1-4 are 1 kHz tones: defined at every rate as
  written (stereo, or 5.0 for case 6), so a stereo -23 dBFS tone reads -23 LUFS.
* Tech 3341 cases 15-19 are tones at 1/4, 1/6, 1/8 of the sample rate with fixed phases;
  being defined relative to fs they are synthesized literally at every rate (at 16 kHz
  the fs/4 tone is 4 kHz). Each tone gets 20 ms raised-cosine ends: a tone switched on
  at a non-zero sample has a genuinely higher band-limited peak (Gibbs overshoot) that is
  not what these cases test.
* Tech 3341 cases 20-23 are specified by their expected reading, 0.0 dBTP, for signals
  whose peak falls between samples. They are built here as band-limited tone bursts with
  an analog peak of exactly 1.0 placed at fractional sample offsets 1/2, 1/4, 1/8 and 3/8
  at frequencies up to 0.4 fs, so the sample peak is well under 0 dBFS; the meter must
  read 0.0 +0.2/-0.4 dB (we assert the issue's stricter 0.1 dB).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from click.testing import CliRunner
from scipy import signal

from greetkit import loudness
from greetkit.cli import cli, main
from greetkit.engines import get_engine
from greetkit.engines.base import RenderRequest
from greetkit.loudness import (
    HEAVY_LIMITING_DB,
    PRESETS,
    integrated_loudness,
    k_weighting_coefficients,
    limit,
    measure,
    momentary_loudness,
    normalize,
    short_term_loudness,
    true_peak,
)

RATES = [48000, 44100, 24000, 22050, 16000]
Array = npt.NDArray[np.float64]


def tone(dbfs: float, seconds: float, rate: int, freq: float = 1000.0,
         phase: float = 0.0) -> Array:
    """A sine of peak level ``dbfs`` (dB re full scale, so -23 dBFS peak)."""
    t = np.arange(round(seconds * rate)) / rate
    return np.asarray(10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t + phase))


def stereo(x: Array) -> Array:
    return np.stack([x, x], axis=1)


def sequence(parts: Sequence[tuple[float, float]], rate: int) -> Array:
    """Stereo 1 kHz tone segments (dBFS, seconds) back to back, phase-continuous."""
    total = sum(s for _, s in parts)
    t = np.arange(round(total * rate)) / rate
    level = np.zeros_like(t)
    start = 0
    for dbfs, seconds in parts:
        end = start + round(seconds * rate)
        level[start:end] = 10 ** (dbfs / 20)
        start = end
    return stereo(level * np.sin(2 * np.pi * 1000 * t))


def smooth_ends(x: Array, rate: int, ms: float = 20.0) -> Array:
    n = round(ms * 1e-3 * rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    out = x.copy()
    out[:n] *= ramp if out.ndim == 1 else ramp[:, None]
    out[-n:] *= ramp[::-1] if out.ndim == 1 else ramp[::-1, None]
    return out


def _espeak(text: str, language: str, voice: str) -> tuple[Array, int]:
    engine = get_engine("espeak")
    audio = asyncio.run(engine.render(RenderRequest(key="t", text=text, language=language,
                                                    voice=voice)))
    return np.asarray(audio.samples, dtype=np.float64), audio.sample_rate


@pytest.fixture(scope="module")
def speech() -> list[tuple[Array, int]]:
    return [_espeak("Hi! I'm Xiaozhi! How can I help you today?", "en", "en"),
            _espeak("Sorry, I didn't catch that. Could you say it once more?", "en", "en"),
            _espeak("你好！我是小智，很高兴见到你。", "zh", "cmn")]


# -- K-weighting -------------------------------------------------------------------------

def test_k_weighting_reproduces_the_bs1770_48k_tables() -> None:
    """Derived coefficients equal BS.1770 Tables 1 and 2 at 48 kHz to 1e-10."""
    b1, a1, b2, a2 = k_weighting_coefficients(48000)
    assert np.allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285],
                       rtol=0, atol=1e-10)
    assert np.allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], rtol=0, atol=1e-10)
    assert b2 == (1.0, -2.0, 1.0)
    assert np.allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], rtol=0, atol=1e-10)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100])
def test_k_weighting_is_derived_per_rate_not_reused(rate: int) -> None:
    """At other rates the response follows the 48 kHz curve at the same frequencies
    (within 0.01 dB below 300 Hz, 0.05 dB to 2 kHz, the bilinear warping of the shelf);
    the 48 kHz table reused at that rate would be off by more than 0.5 dB."""
    freqs = np.array([20.0, 40.0, 100.0, 200.0, 500.0, 1000.0, 1500.0, 2000.0])

    def response(coefs: tuple[tuple[float, ...], ...], fs: int) -> Array:
        b1, a1, b2, a2 = coefs
        _, h1 = signal.freqz(b1, a1, worN=freqs, fs=fs)
        _, h2 = signal.freqz(b2, a2, worN=freqs, fs=fs)
        return np.asarray(20 * np.log10(np.abs(h1 * h2)))

    reference = response(k_weighting_coefficients(48000), 48000)
    derived = response(k_weighting_coefficients(rate), rate)
    reused = response(k_weighting_coefficients(48000), rate)
    assert np.max(np.abs(derived - reference)[:4]) < 0.01
    assert np.max(np.abs(derived - reference)) < 0.05
    assert np.max(np.abs(reused - reference)) > 0.5


def test_same_speech_reads_the_same_at_every_rate(speech: list[tuple[Array, int]]) -> None:
    """Real speech band-limited to 7 kHz, resampled (soxr) to every input rate, measures
    the same integrated loudness within 0.03 LU."""
    import soxr

    samples, rate = speech[1]
    sos = signal.butter(12, 7000, fs=rate, output="sos")
    base = signal.sosfiltfilt(sos, samples)
    readings = [integrated_loudness(soxr.resample(base, rate, r, quality="VHQ"), r)
                for r in RATES]
    assert max(readings) - min(readings) < 0.03


# -- EBU Tech 3341 loudness cases ---------------------------------------------------------

def _case(number: int, rate: int) -> Array:
    if number == 1:
        return stereo(tone(-23, 20, rate))
    if number == 2:
        return stereo(tone(-33, 20, rate))
    if number == 3:
        return sequence([(-36, 10), (-23, 60), (-36, 10)], rate)
    if number == 4:
        return sequence([(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)], rate)
    if number == 5:
        return sequence([(-26, 20), (-20, 20.1), (-26, 20)], rate)
    # Case 6: 5.0 channels L, R, C, Ls, Rs at -28, -28, -24, -30, -30 dBFS, 20 s.
    return np.stack([tone(level, 20, rate) for level in (-28, -28, -24, -30, -30)], axis=1)


CASE_I = {1: -23.0, 2: -33.0, 3: -23.0, 4: -23.0, 5: -23.0, 6: -23.0}


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("case", sorted(CASE_I))
def test_tech3341_integrated_loudness(case: int, rate: int) -> None:
    """Tech 3341 cases 1-6: integrated loudness within +-0.1 LU of the stated value."""
    report = measure(_case(case, rate), rate, peak=False)
    assert report.integrated_lufs == pytest.approx(CASE_I[case], abs=0.1)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("case", [1, 2])
def test_tech3341_momentary_and_short_term(case: int, rate: int) -> None:
    """Tech 3341 cases 1-2: every momentary and short-term value equals I +-0.1 LU."""
    x = _case(case, rate)
    for series in (momentary_loudness(x, rate), short_term_loudness(x, rate)):
        assert series.size > 0
        assert np.all(np.abs(series - CASE_I[case]) <= 0.1)


# -- EBU Tech 3342 loudness range -------------------------------------------------------------

LRA_CASES = {
    1: ([(-20, 20), (-30, 20)], 10.0),
    2: ([(-20, 20), (-15, 20)], 5.0),
    3: ([(-40, 20), (-20, 20)], 20.0),
    4: ([(-50, 20), (-35, 20), (-20, 20), (-35, 20), (-50, 20)], 15.0),
}


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("case", sorted(LRA_CASES))
def test_tech3342_loudness_range(case: int, rate: int) -> None:
    """Tech 3342 cases 1-4: LRA within +-1 LU of the stated value."""
    parts, expected = LRA_CASES[case]
    assert measure(sequence(parts, rate), rate, peak=False).lra == pytest.approx(expected,
                                                                                  abs=1.0)


# -- true peak ---------------------------------------------------------------------------

def _true_peak_case(number: int, rate: int) -> Array:
    """Tech 3341 cases 15-19 as written; 20-23 as described in the module docstring."""
    if number <= 19:
        freq, amplitude, phase_deg = {
            15: (rate / 4, 0.5, 0.0), 16: (rate / 4, 0.5, 45.0), 17: (rate / 6, 0.5, 60.0),
            18: (rate / 8, 0.5, 67.5), 19: (rate / 4, 1.41, 45.0),
        }[number]
        t = np.arange(rate) / rate
        x = amplitude * np.sin(2 * np.pi * freq * t + np.radians(phase_deg))
        return smooth_ends(stereo(x), rate)
    freq_ratio, offset = {20: (0.25, 0.5), 21: (1 / 6, 0.25), 22: (0.4, 0.125),
                          23: (0.3, 0.375)}[number]
    n = np.arange(rate // 2)
    centre = rate // 4 + offset  # the analog peak sits between two samples
    envelope = np.clip(1.0 - np.abs(n - centre) / (0.2 * rate), 0.0, 1.0)
    envelope = np.where(np.abs(n - centre) < 0.05 * rate, 1.0,
                        0.5 - 0.5 * np.cos(np.pi * np.minimum(1.0, envelope / 0.75)))
    x = envelope * np.cos(2 * np.pi * freq_ratio * (n - centre))
    return stereo(x)


TP_EXPECTED = {15: -6.0, 16: -6.0, 17: -6.0, 18: -6.0, 19: 3.0,
               20: 0.0, 21: 0.0, 22: 0.0, 23: 0.0}


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("case", sorted(TP_EXPECTED))
def test_tech3341_true_peak(case: int, rate: int) -> None:
    """Tech 3341 cases 15-23: true peak within +0.2/-0.4 dB (and 0.1 dB) of the value."""
    reading = true_peak(_true_peak_case(case, rate), rate)
    error = reading - TP_EXPECTED[case]
    assert -0.4 <= error <= 0.2
    assert abs(error) < 0.1


@pytest.mark.parametrize("rate", RATES)
def test_true_peak_error_under_0_1_db_at_any_phase(rate: int) -> None:
    """Tone bursts from 1 kHz to 0.42 fs at 16 phases each read within 0.1 dB of their
    analog peak, and never below the sample peak."""
    worst = 0.0
    for freq in (997.0, rate / 8, rate / 4, 0.35 * rate, 0.42 * rate):
        for phase in np.linspace(0, np.pi, 16, endpoint=False):
            x = smooth_ends(tone(-6.0, 0.25, rate, freq, phase), rate)
            reading = true_peak(x, rate)
            assert reading >= 20 * math.log10(np.max(np.abs(x))) - 1e-9
            worst = max(worst, abs(reading + 6.0))
    assert worst < 0.1


def test_true_peak_of_a_long_signal_is_exact_across_chunks() -> None:
    """Long inputs are oversampled in chunks (bounded memory); peaks placed right at the
    chunk seams read as in one pass over the whole signal (within the refinement)."""
    rng = np.random.default_rng(3)
    x = 0.05 * rng.standard_normal((48000 * 6, 2))
    for seam in range(1 << 16, x.shape[0], 1 << 16):
        x[seam - 1: seam + 1, seam % 2] = 0.7 + 0.1 * (seam >> 16) / 4
    one_pass = 20 * math.log10(float(np.max(np.abs(loudness.oversample(x, 48000)[0]))))
    assert 0.0 <= true_peak(x, 48000) - one_pass < 0.01


def test_long_inputs_are_k_weighted_in_chunks_exactly(monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """The meter filters long inputs chunk by chunk with the filter state carried over:
    tiny chunks (not aligned with the 100 ms steps) give the one-pass result."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((22050 * 9 + 123, 2)) * np.linspace(0.001, 0.3, 22050 * 9 + 123
                                                                )[:, None]
    whole = measure(x, 22050, peak=False)
    monkeypatch.setattr(loudness, "_KW_CHUNK_FRAMES", 1001)
    chunked = measure(x, 22050, peak=False)
    assert chunked.integrated_lufs == pytest.approx(whole.integrated_lufs, abs=1e-9)
    assert chunked.lra == pytest.approx(whole.lra, abs=1e-9)
    assert chunked.max_short_term_lufs == pytest.approx(whole.max_short_term_lufs, abs=1e-9)


def test_997hz_full_scale_reads_minus_3_01_lkfs() -> None:
    """BS.1770: a 0 dBFS 997 Hz sine in one channel (mono, or left of stereo) is -3.01 LKFS."""
    x = tone(0.0, 5.0, 48000, 997.0)
    assert integrated_loudness(x, 48000) == pytest.approx(-3.01, abs=0.01)
    left_only = np.stack([x, np.zeros_like(x)], axis=1)
    assert integrated_loudness(left_only, 48000) == pytest.approx(-3.01, abs=0.01)


# -- short clips and silence ---------------------------------------------------------------

def test_clip_shorter_than_a_block_is_one_block_with_a_warning() -> None:
    """A 0.3 s tone: no complete 400 ms block, so the whole clip is measured as one block
    (its level equals the same tone's long-term level) and 'short-clip' is reported."""
    short = measure(tone(-20, 0.3, 48000), 48000)
    long = measure(tone(-20, 5.0, 48000), 48000)
    assert "short-clip" in short.warnings and "short-clip" not in long.warnings
    assert short.integrated_lufs == pytest.approx(long.integrated_lufs, abs=0.05)
    assert short.max_momentary_lufs == pytest.approx(short.integrated_lufs)
    assert short.lra == 0.0


def test_partial_last_block_is_not_counted() -> None:
    """0.4 s of tone then 0.05 s of a much louder tone: only the one complete block counts."""
    x = np.concatenate([tone(-30, 0.4, 48000), tone(-6, 0.05, 48000)])
    reference = integrated_loudness(tone(-30, 0.4, 48000), 48000)
    assert integrated_loudness(x, 48000) == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize("frames", [0, 100, 48000 * 3])
def test_silence_is_minus_inf_with_a_warning(frames: int) -> None:
    """Digital silence of any length measures -inf everywhere, warns 'silent', no crash."""
    report = measure(np.zeros(frames), 48000)
    assert report.integrated_lufs == -math.inf and report.true_peak_db == -math.inf
    assert report.max_momentary_lufs == -math.inf and report.lra == 0.0
    assert "silent" in report.warnings


def test_gating_ignores_quiet_passages() -> None:
    """Blocks under the -70 LUFS absolute gate or 10 LU under the gated mean do not count:
    a -40 dBFS passage and silence after a -20 dBFS tone read like silence alone (only the
    blocks straddling the edge count), and far from the ungated power mean."""
    loud = tone(-20, 5, 48000)
    with_quiet = np.concatenate([loud, tone(-40, 5, 48000), np.zeros(48000 * 5)])
    with_silence = np.concatenate([loud, np.zeros(48000 * 10)])
    gated = integrated_loudness(with_quiet, 48000)
    assert gated == pytest.approx(integrated_loudness(with_silence, 48000), abs=0.01)
    assert gated == pytest.approx(integrated_loudness(loud, 48000), abs=0.2)


def test_integer_pcm_is_scaled_by_full_scale() -> None:
    """int16 input reads like its float equivalent (sample / 32768)."""
    x = tone(-20, 2.0, 48000)
    pcm = np.round(x * 32768).astype(np.int16)
    assert integrated_loudness(pcm, 48000) == pytest.approx(integrated_loudness(x, 48000),
                                                            abs=0.001)


# -- limiter and normalize --------------------------------------------------------------------

def test_presets() -> None:
    """The four presets, target LUFS and ceiling dBTP."""
    assert PRESETS == {"speech": (-18.0, -1.5), "podcast": (-16.0, -1.0),
                       "broadcast": (-23.0, -1.0), "telephony": (-26.0, -3.0)}
    assert loudness.DEFAULT_PRESET == "speech"


def test_normalize_without_limiting_is_pure_gain() -> None:
    """A quiet tone needs only gain: exact target, limiter_db 0, waveform only scaled."""
    x = tone(-30, 2.0, 48000)
    out, report = normalize(x, 48000, -23.0, -1.0)
    assert report.limiter_db == 0.0
    assert integrated_loudness(out, 48000) == pytest.approx(-23.0, abs=1e-6)
    assert np.allclose(out[:, 0], x * 10 ** (report.gain_db / 20), rtol=0, atol=1e-12)


def test_limiter_holds_the_true_peak_not_just_the_sample_peak() -> None:
    """An fs/4 tone at 45 degrees has samples 3 dB under its true peak; limiting to -1 dBTP
    brings the true peak (not only the samples) under the ceiling."""
    x = smooth_ends(tone(0.0, 1.0, 48000, 12000.0, math.pi / 4), 48000)
    assert 20 * math.log10(np.max(np.abs(x))) < -2.9  # the samples alone look safe
    out, reduction = limit(x, 48000, -1.0)
    assert true_peak(out, 48000) <= -1.0
    assert reduction > 0.9


@pytest.mark.parametrize("preset", ["speech", "podcast"])
def test_limiter_holds_ceiling_on_peaky_espeak_speech(speech: list[tuple[Array, int]],
                                                      preset: str) -> None:
    """Real espeak speech (17-19 dB peak-to-loudness) normalized to a preset: loudness
    within 0.05 LU by our meter, true peak <= ceiling, and the limiter did act; the only
    possible warning is heavy-limiting, exactly when it took more than 6 dB (podcast's
    -16 LUFS under a -1 dBTP ceiling takes ~6.7 dB on espeak's peaky speech)."""
    target, ceiling = PRESETS[preset]
    for samples, rate in speech:
        out, report = normalize(samples, rate, target, ceiling)
        assert integrated_loudness(out, rate) == pytest.approx(target, abs=0.05)
        assert true_peak(out, rate) <= ceiling
        assert report.limiter_db > 0.0 and report.true_peak_db <= ceiling
        heavy = report.limiter_db > HEAVY_LIMITING_DB
        assert [w.split(":")[0] for w in report.warnings] == (["heavy-limiting"] if heavy
                                                              else [])


def test_limiter_gain_is_smooth(speech: list[tuple[Array, int]]) -> None:
    """The limiter's gain never jumps: under 0.05 dB change per sample (hard clipping
    would jump by many dB), and it releases between peaks instead of pumping the clip."""
    samples, rate = speech[0]
    boosted = samples * 10 ** (6 / 20)
    out, reduction = limit(boosted, rate, -1.0)
    assert reduction > 3.0
    audible = np.abs(boosted) > 1e-3
    gain_db = 20 * np.log10(out[audible, 0] / boosted[audible])
    steps = np.abs(np.diff(gain_db))
    # Neighbouring audible samples only (skip gaps where quiet samples were dropped).
    idx = np.flatnonzero(audible)
    adjacent = np.diff(idx) == 1
    assert np.max(steps[adjacent]) < 0.05
    # Driven 6 dB into the ceiling, it still acts on peaks, not on the whole clip:
    # the median sample is reduced by under 1 dB and a tenth passes untouched.
    assert np.median(gain_db) > -1.0
    assert np.mean(gain_db > -0.1) > 0.1


# -- greetkit loudness -----------------------------------------------------------------------

@pytest.fixture()
def wavs(tmp_path):  # type: ignore[no-untyped-def]
    tone_path = tmp_path / "tone.wav"
    sf.write(tone_path, stereo(tone(-23, 5, 48000)), 48000, subtype="PCM_24")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4800), 48000, subtype="PCM_16")
    return tone_path, silent


def test_command_prints_a_table(wavs) -> None:  # type: ignore[no-untyped-def]
    """The table has one row per file with I, LRA, M/S max, true peak, notes."""
    tone_path, silent = wavs
    result = CliRunner().invoke(cli, ["loudness", str(tone_path), str(silent)])
    assert result.exit_code == 0, result.output
    header, first, second = result.output.splitlines()
    assert header.split()[:3] == ["FILE", "I", "LUFS"]
    assert first.split()[:2] == [str(tone_path), "-23.0"]
    assert second.split()[1] == "-inf" and second.endswith("short-clip,silent")


def test_command_json_lines(wavs) -> None:  # type: ignore[no-untyped-def]
    """--json: one object per file per line with exactly the documented keys; silence
    is null (JSON has no -inf)."""
    tone_path, silent = wavs
    result = CliRunner().invoke(cli, ["loudness", "--json", str(tone_path), str(silent)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [list(o) for o in lines] == [["file", "integrated_lufs", "lra", "max_momentary_lufs",
                                         "max_short_term_lufs", "true_peak_db"]] * 2
    assert lines[0]["file"] == str(tone_path)
    assert lines[0]["integrated_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert lines[0]["true_peak_db"] == pytest.approx(-23.0, abs=0.1)
    assert lines[1]["integrated_lufs"] is None and lines[1]["true_peak_db"] is None


def test_command_unreadable_file_is_one_line_and_nonzero(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A file libsndfile cannot decode: one 'greetkit: <file>: ...' line, exit 1."""
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["loudness", str(bad)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"greetkit: {bad}: cannot read audio") and "\n" not in err
    result = CliRunner().invoke(cli, ["loudness", str(tmp_path / "missing.wav")])
    assert result.exit_code != 0


def test_command_measures_good_files_beside_a_bad_one(wavs, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`greetkit loudness GOOD.wav voices.yaml missing.wav`: GOOD's row is printed, then one
    line per unreadable file (a missing one says so plainly), exit 1."""
    tone_path, _ = wavs
    spec = tmp_path / "voices.yaml"
    spec.write_text("version: 1\n", encoding="utf-8")
    missing = tmp_path / "missing.wav"
    with pytest.raises(SystemExit) as exit_info:
        main(["loudness", str(tone_path), str(spec), str(missing)])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    _header, row = captured.out.splitlines()
    assert row.split()[:2] == [str(tone_path), "-23.0"]
    assert captured.err.splitlines() == [
        f"greetkit: {spec}: cannot read audio (Format not recognised.)",
        f"greetkit: {missing}: no such file; check the path",
    ]
