"""Loudness bench (issue 3): prints tables and ratios against named baselines.

    python bench/loudness.py        # ~1 min on 2 cores; needs pyloudnorm, uses ffmpeg if found

On the same fifty espeak-ng clips as tests/test_dsp.py (0.3-8 s, en + zh):

1. Meter: greetkit's integrated loudness (and its full ``measure``: I, LRA, M/S max and
   x8+ true peak) vs ``pyloudnorm.Meter.integrated_loudness``, at espeak's 22.05 kHz and
   at 48 kHz; time per clip and pyloudnorm's error against greetkit's exact meter.
2. Normalize: greetkit's chain from the 48 kHz trimmed clip to int16 (normalize + limiter +
   fades + dither + final check) vs ffmpeg's two-pass ``loudnorm`` (linear mode, measured
   values from pass 1) to -18 LUFS / -1.5 dBTP. Accuracy of both outputs against the
   target by ffmpeg's ``ebur128`` meter (0.1 resolution) and by greetkit's meter, true
   peaks over the ceiling, failures, wall time per clip.

Not a test: nothing is asserted. pyloudnorm is an optional bench-only dependency
(``pip install pyloudnorm``); without ffmpeg, part 2 is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from speech_clips import SpeechClip, render_clips

from greetkit import dsp, loudness

TARGET, CEILING = loudness.PRESETS["speech"]


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Fastest wall time of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.rjust(w) if i else v.ljust(w)
                        for i, (v, w) in enumerate(zip(r, widths, strict=True))))


# -- 1. meter --------------------------------------------------------------------------------

def bench_meter(clips: list[SpeechClip]) -> None:
    import pyloudnorm

    print("\n1. Meter: greetkit vs pyloudnorm on the 50 espeak clips (source, untrimmed)")
    rows = [("rate", "greetkit I ms/clip", "greetkit measure ms/clip", "pyloudnorm ms/clip",
             "pyln/greetkit-I time", "pyln err median LU", "pyln err min..max LU",
             "pyln raised")]
    for rate in (22050, 48000):
        ours_i, ours_full, theirs, errors, raised = [], [], [], [], 0
        meter = pyloudnorm.Meter(rate)
        for clip in clips:
            x = clip.samples.astype(np.float64)
            if rate != clip.sample_rate:
                x = soxr.resample(x, clip.sample_rate, rate, quality="VHQ")
            t_i, ours = best_of(partial(loudness.integrated_loudness, x, rate))
            t_full, _ = best_of(partial(loudness.measure, x, rate))
            try:
                t_pyln, value = best_of(partial(meter.integrated_loudness, x))
            except ValueError:
                raised += 1
                continue
            ours_i.append(t_i)
            ours_full.append(t_full)
            theirs.append(t_pyln)
            errors.append(value - ours)
        rows.append((f"{rate}", f"{1e3 * statistics.mean(ours_i):.2f}",
                     f"{1e3 * statistics.mean(ours_full):.1f}",
                     f"{1e3 * statistics.mean(theirs):.2f}",
                     f"{sum(theirs) / sum(ours_i):.2f}x",
                     f"{statistics.median(errors):+.3f}",
                     f"{min(errors):+.3f}..{max(errors):+.3f}", f"{raised}"))
    table(rows)


# -- 2. normalize ----------------------------------------------------------------------------

def ffmpeg(*args: str) -> str:
    run = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-y", *args],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip().splitlines()[-1])
    return run.stderr


def ebur128(path: Path) -> tuple[float, float]:
    err = ffmpeg("-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-")
    summary = err[err.rindex("Summary:"):]
    i = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    p = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    assert i and p
    return float(i.group(1)), float(p.group(1))


def loudnorm_two_pass(src: Path, out: Path) -> None:
    base = f"loudnorm=I={TARGET}:TP={CEILING}:LRA=11"
    err = ffmpeg("-i", str(src), "-af", f"{base}:print_format=json", "-f", "null", "-")
    stats = json.loads(err[err.rindex("{"):err.rindex("}") + 1])
    second = (f"{base}:measured_I={stats['input_i']}:measured_TP={stats['input_tp']}"
              f":measured_LRA={stats['input_lra']}:measured_thresh={stats['input_thresh']}"
              f":offset={stats['target_offset']}:linear=true:print_format=summary")
    ffmpeg("-i", str(src), "-af", second, "-ar", "48000", "-c:a", "pcm_s16le", str(out))


def bench_normalize(clips: list[SpeechClip], tmp: Path) -> None:
    print(f"\n2. Normalize to {TARGET} LUFS / {CEILING} dBTP: greetkit vs ffmpeg loudnorm "
          "two-pass (48 kHz trimmed input, int16 out)")
    params = dsp.DspParams(target_lufs=TARGET, true_peak_ceiling_db=CEILING)
    results: dict[str, dict[str, list[float]]] = {"greetkit": {}, "ffmpeg loudnorm": {}}
    for r in results.values():
        for k in ("time", "ff_err_long", "our_err_all", "our_err_long", "tp_over", "ff_tp_over",
                  "fail"):
            r[k] = []
    for i, clip in enumerate(clips):
        x = dsp.trim(dsp.resample(dsp.to_mono(clip.samples, clip.sample_rate, params),
                                  clip.sample_rate, params), 48000, params)
        src = tmp / f"{clip.name}.in.wav"
        sf.write(src, x, 48000, subtype="FLOAT")
        long = x.shape[0] >= 48000
        for name in results:
            out = tmp / f"{clip.name}.{name.split()[0]}.wav"
            start = time.perf_counter()
            try:
                if name == "greetkit":
                    sf.write(out, dsp.process(x, 48000, params, seed=i).pcm, 48000,
                             subtype="PCM_16")
                else:
                    loudnorm_two_pass(src, out)
            except (RuntimeError, ValueError, json.JSONDecodeError):
                results[name]["fail"].append(1.0)
                continue
            results[name]["time"].append(time.perf_counter() - start)
            ff_i, ff_tp = ebur128(out)
            pcm, rate = sf.read(out, dtype="int16")
            ours = loudness.measure(pcm, rate)
            err = ff_i - TARGET
            results[name]["our_err_all"].append(abs(ours.integrated_lufs - TARGET))
            if long:
                results[name]["ff_err_long"].append(abs(err))
                results[name]["our_err_long"].append(abs(ours.integrated_lufs - TARGET))
            results[name]["tp_over"].append(1.0 if ours.true_peak_db > CEILING else 0.0)
            results[name]["ff_tp_over"].append(1.0 if ff_tp > CEILING + 0.1 else 0.0)

    rows = [("tool", "ms/clip", "|I-target| >=1s mean/max (ffmpeg meter)",
             "clips >=1s off >0.2 LU", "|I-target| >=1s max (greetkit meter)",
             "|I-target| all clips max (greetkit meter)", "TP > ceiling",
             "ffmpeg TP > ceiling+0.1", "failed")]
    for name, r in results.items():
        long_err = r["ff_err_long"]
        rows.append((name, f"{1e3 * statistics.mean(r['time']):.0f}",
                     f"{statistics.mean(long_err):.2f} / {max(long_err):.2f}",
                     f"{sum(e > 0.2 for e in long_err)}/{len(long_err)}",
                     f"{max(r['our_err_long']):.3f}", f"{max(r['our_err_all']):.3f}",
                     f"{int(sum(r['tp_over']))}/{len(r['tp_over'])}",
                     f"{int(sum(r['ff_tp_over']))}/{len(r['ff_tp_over'])}",
                     f"{int(sum(r['fail']))}"))
    table(rows)
    print("(ffmpeg's ebur128 reads clips < 0.4 s as -70 LUFS, so the all-clips column uses "
          "greetkit's meter; TP by greetkit's x8+ meter)")
    ratio = statistics.mean(results["ffmpeg loudnorm"]["time"]) / statistics.mean(
        results["greetkit"]["time"])
    print(f"time ratio ffmpeg loudnorm two-pass / greetkit: {ratio:.2f}x "
          "(ffmpeg includes two process launches per clip)")


def main() -> None:
    clips = render_clips()
    lengths = [c.duration for c in clips]
    print(f"{len(clips)} espeak clips, {min(lengths):.2f}-{max(lengths):.2f} s at "
          f"{clips[0].sample_rate} Hz (before trimming)")
    bench_meter(clips)
    if shutil.which("ffmpeg") is None:
        print("\n2. skipped: ffmpeg not on PATH")
        return
    with tempfile.TemporaryDirectory() as tmp:
        bench_normalize(clips, Path(tmp))


if __name__ == "__main__":
    main()
