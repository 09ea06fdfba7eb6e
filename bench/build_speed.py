"""Build speed bench (issue 18): greetkit against named baselines, side by side in one run.

    python bench/build_speed.py            # 200 clips x 2 rates (several minutes on 2 cores)
    python bench/build_speed.py --clips 20 # quick look

Rows (CPU = user + system of this process and its children; wall = elapsed):

1. DSP realtime factor per core: ``dsp.process`` of a 10.1 s espeak clip into 48 + 24 kHz;
   seconds of clip per CPU second, best of 15 (a shared host slows whole seconds at a
   time). Measured first with glibc's default allocator, then as the build masters
   (:func:`greetkit.pool.keep_freed_memory`: freed memory reused instead of faulted in
   afresh); the target is judged on the second.
2. Build: ``greetkit.build.build`` of N espeak clips x (48 + 24 kHz), fresh (``force``),
   with ``jobs=1`` and with the default (every core; worker CPU is counted: they are
   children this process waits for), vs the espeak-only render floor (the same N renders,
   nothing else) and vs a scripted
   pipeline: espeak render to WAV, ``ffmpeg loudnorm`` pass 1 (measure), then pass 2
   (linear, measured values) per rate with soxr resampling, int16 out: 3 launches a clip.
3. ``greetkit loudness`` on a 60 s 48 kHz stereo speech file (``measure_file``: integrated,
   LRA, momentary/short-term max, true peak) vs ``pyloudnorm.Meter.integrated_loudness``
   (integrated only) on the same samples; best of 3.

Targets from the issue: build >= 3x faster than the ffmpeg pipeline in CPU, DSP >= 50x
realtime per core, loudness on 60 s within 2x pyloudnorm. Not a test: nothing is asserted.
Needs ffmpeg on PATH (row 2's baseline) and pyloudnorm (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from greetkit import dsp
from greetkit.build import build
from greetkit.engines import get_engine
from greetkit.engines.base import RenderedAudio, RenderRequest
from greetkit.loudness import measure_file
from greetkit.pool import default_jobs, keep_freed_memory
from greetkit.spec import LOUDNESS_PRESETS

TARGET, CEILING = LOUDNESS_PRESETS["speech"]
RATES = (48000, 24000)
_WORDS = ("hello", "welcome back", "how can I help you today", "one moment please",
          "your order has shipped", "the weather is sunny", "thanks for calling",
          "let's play a game", "good evening", "I can set timers and tell stories")


def texts(count: int) -> list[str]:
    """``count`` distinct greeting-like sentences, 1-8 s of espeak speech each."""
    out = []
    for i in range(count):
        parts = [_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(1 + i % 4)]
        out.append(f"{', '.join(parts).capitalize()}, number {i}.")
    return out


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU s, wall s, result) of one call."""
    c0, w0 = cpu(), time.perf_counter()
    result = fn()
    return cpu() - c0, time.perf_counter() - w0, result


def render(text: str) -> RenderedAudio:
    request = RenderRequest(key="k", text=text, language="en", voice="en-us", options={},
                            project_dir=Path("."))
    return asyncio.run(get_engine("espeak").render(request))


def write_spec(root: Path, lines: list[str]) -> Path:
    phrases = "\n".join(f"  p{i}:\n    en: {json.dumps(t)}" for i, t in enumerate(lines))
    path = root / "voices.yaml"
    path.write_text("version: 1\ndefaults:\n  engine: espeak\n  language: en\n"
                    f"  sample_rates: [{', '.join(map(str, RATES))}]\n"
                    "languages:\n  en: {voices: {espeak: en-us}}\n"
                    f"phrases:\n{phrases}\n", encoding="utf-8")
    return path


def ffmpeg(*args: str) -> str:
    run = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-y", *args],
                         capture_output=True, text=True, check=True)
    return run.stderr


def ffmpeg_pipeline(lines: list[str], root: Path) -> float:
    """espeak render + ffmpeg loudnorm two-pass per rate; returns seconds of audio made."""
    base = f"loudnorm=I={TARGET}:TP={CEILING}:LRA=11"
    seconds = 0.0
    for i, text in enumerate(lines):
        audio = render(text)
        src = root / f"{i}.wav"
        sf.write(src, audio.samples, audio.sample_rate, subtype="FLOAT")
        err = ffmpeg("-i", str(src), "-af", f"{base}:print_format=json", "-f", "null", "-")
        s = json.loads(err[err.rindex("{"):err.rindex("}") + 1])
        second = (f"{base}:measured_I={s['input_i']}:measured_TP={s['input_tp']}"
                  f":measured_LRA={s['input_lra']}:measured_thresh={s['input_thresh']}"
                  f":offset={s['target_offset']}:linear=true")
        for rate in RATES:
            ffmpeg("-i", str(src), "-af", f"{second},aresample={rate}:resampler=soxr",
                   "-ac", "1", "-c:a", "pcm_s16le", str(root / f"{i}.{rate}.wav"))
            seconds += audio.duration
    return seconds


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.rjust(w) if i else v.ljust(w)
                        for i, (v, w) in enumerate(zip(r, widths, strict=True))))


def bench_build(count: int) -> None:
    lines = texts(count)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = write_spec(root, lines)
        render("warm up")  # load libespeak-ng once, outside every row
        floor_cpu, floor_wall, audios = timed(lambda: [render(t) for t in lines])
        audio_s = sum(a.duration for a in audios) * len(RATES)
        serial_cpu, serial_wall, result = timed(
            lambda: build(spec, root / "serial", force=True, jobs=1))
        assert len(result.rendered) == count, result.summary()
        build_cpu, build_wall, result = timed(lambda: build(spec, root / "bank", force=True))
        assert len(result.rendered) == count, result.summary()
        ff_root = root / "ffmpeg"
        ff_root.mkdir()
        ff_cpu, ff_wall, _ = timed(lambda: ffmpeg_pipeline(lines, ff_root))
    print(f"\n2. Build: {count} espeak clips x {len(RATES)} rates ({audio_s:.0f} s of audio)")
    table([("pipeline", "CPU s", "wall s", "CPU / render floor", "ffmpeg CPU / this CPU"),
           ("espeak render only (floor)", f"{floor_cpu:.2f}", f"{floor_wall:.2f}", "1.00x",
            f"{ff_cpu / floor_cpu:.2f}x"),
           ("greetkit build --jobs 1", f"{serial_cpu:.2f}", f"{serial_wall:.2f}",
            f"{serial_cpu / floor_cpu:.2f}x", f"{ff_cpu / serial_cpu:.2f}x"),
           (f"greetkit build (default: --jobs {default_jobs()})", f"{build_cpu:.2f}",
            f"{build_wall:.2f}", f"{build_cpu / floor_cpu:.2f}x", f"{ff_cpu / build_cpu:.2f}x"),
           ("espeak + ffmpeg loudnorm 2-pass", f"{ff_cpu:.2f}", f"{ff_wall:.2f}",
            f"{ff_cpu / floor_cpu:.2f}x", "1.00x")])
    print(f"target: greetkit build >= 3x faster than ffmpeg in CPU: "
          f"{'met' if ff_cpu >= 3 * build_cpu else 'NOT met'} ({ff_cpu / build_cpu:.2f}x; "
          f"--jobs 1: {ff_cpu / serial_cpu:.2f}x); wall: {ff_wall / build_wall:.2f}x faster")


DSP_TEXT = ("Hello there! I'm your friendly assistant, and I'm here to help with anything "
            "you need. Today the weather will be sunny with a light breeze, so it is a lovely "
            "day to go outside and play.")


def dsp_factor(audio: RenderedAudio) -> tuple[float, float]:
    """Best CPU seconds of 15 for both rates of ``audio``, and the realtime factor."""
    best = float("inf")
    for _ in range(15):
        c, _w, _r = timed(lambda: [dsp.process(audio.samples, audio.sample_rate,
                                               dsp.DspParams(sample_rate=r), seed=1)
                                   for r in RATES])
        best = min(best, c)
    return best, audio.duration / best


def bench_dsp() -> None:
    audio = render(DSP_TEXT)
    dsp.process(audio.samples, audio.sample_rate, dsp.DspParams(), seed=1)  # imports, caches
    default_cpu, default_factor = dsp_factor(audio)
    tuned = keep_freed_memory()
    tuned_cpu, tuned_factor = dsp_factor(audio)
    print(f"\n1. DSP: {audio.duration:.2f} s espeak clip -> {' + '.join(map(str, RATES))} Hz")
    table([("allocator", "CPU s", "realtime per core"),
           ("glibc defaults", f"{default_cpu:.3f}", f"{default_factor:.1f}x"),
           ("as the build masters (keep_freed_memory)" + ("" if tuned else ": not available"),
            f"{tuned_cpu:.3f}", f"{tuned_factor:.1f}x")])
    print(f"target >= 50x realtime per core: {'met' if tuned_factor >= 50 else 'NOT met'} "
          f"({tuned_factor:.1f}x)")


def bench_loudness() -> None:
    import pyloudnorm

    pieces, total = [], 0
    i = 0
    while total < 60 * 48000:
        a = render(texts(40)[i % 40])
        x = dsp.resample(np.asarray(a.samples, np.float64), a.sample_rate,
                         dsp.DspParams(sample_rate=48000))
        pieces.append(x)
        total += x.size
        i += 1
    mono = np.concatenate(pieces)[:60 * 48000]
    stereo = np.stack([mono, np.roll(mono, 4800) * 0.8], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech60.wav"
        sf.write(path, stereo, 48000, subtype="PCM_16")
        data, rate = sf.read(path)
        meter = pyloudnorm.Meter(rate)
        ours = min(timed(lambda: measure_file(path))[0] for _ in range(3))
        theirs = min(timed(lambda: meter.integrated_loudness(data))[0] for _ in range(3))
        report = measure_file(path)
        value = meter.integrated_loudness(data)
    print("\n3. Loudness of a 60 s 48 kHz stereo speech file")
    table([("meter", "CPU ms", "integrated LUFS"),
           ("greetkit loudness (I, LRA, M/S, true peak, file read)", f"{1e3 * ours:.0f}",
            f"{report.integrated_lufs:.2f}"),
           ("pyloudnorm integrated_loudness (I only)", f"{1e3 * theirs:.0f}", f"{value:.2f}")])
    print(f"target: within 2x pyloudnorm: {'met' if ours <= 2 * theirs else 'NOT met'} "
          f"({ours / theirs:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="clips in the build row")
    args = parser.parse_args()
    bench_dsp()  # first: the build's mastering tunes this process's allocator
    bench_build(args.clips)
    bench_loudness()


if __name__ == "__main__":
    sys.exit(main())
