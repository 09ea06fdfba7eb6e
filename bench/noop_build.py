"""No-op build bench (issue 13): how long ``greetkit build`` takes when nothing changed.

    python bench/noop_build.py [--runs 7]   # builds its stores once under a temp dir

Side by side in one run, each a fresh process, interleaved round-robin so machine load hits
all alike, wall time (median and min of ``--runs``):

* baseline: ``python -c "import numpy, yaml, jinja2, click"`` (the libraries any build needs);
* the shipped voices.yaml (edge voices; offline its clips are espeak drafts, so each build
  retries edge: measured with edge pointed at a closed loopback port, which refuses at once,
  and with the default endpoint as this machine resolves it);
* a 200-clip espeak spec (100 phrases x en, es).

Target (issue 13): the shipped spec's no-op build within 2x the baseline. Nothing is
asserted; the figures and ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLOSED_PORT_URL = "wss://127.0.0.1:9/edge/v1?TrustedClientToken=x"


def big_spec(n_phrases: int = 100) -> str:
    """A voices.yaml of ``n_phrases`` x 2 languages = 200 espeak clips (48 kHz only)."""
    lines = ["version: 1", "defaults: {engine: espeak, language: en, sample_rates: [48000]}",
             "languages:", "  en: {voices: {espeak: en-us}}", "  es: {voices: {espeak: es}}",
             "phrases:"]
    for i in range(n_phrases - 1):
        lines += [f"  p{i:03d}:", f'    en: "Hello number {i}."', f'    es: "Hola número {i}."']
    lines += ["  last:", '    en: "Goodbye."', '    es: "Adiós."',
              "fallback: {language: en, text: \"One moment.\"}"]
    return "\n".join(lines) + "\n"


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} in {cwd} failed:\n{out.stdout}{out.stderr}")
    if "build" in cmd and "nothing to render" not in out.stdout:
        raise SystemExit(f"not a no-op build in {cwd}:\n{out.stdout}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    build = [py, "-m", "greetkit.cli", "build", "-q"]
    base_env = dict(os.environ)
    offline_env = {**base_env, "GREETKIT_EDGE_URL": CLOSED_PORT_URL}
    with tempfile.TemporaryDirectory(prefix="greetkit-noop-") as tmp:
        shipped = Path(tmp) / "shipped"
        shipped.mkdir()
        shutil.copy(REPO / "voices.yaml", shipped / "voices.yaml")
        shutil.copytree(REPO / "templates", shipped / "templates")
        big = Path(tmp) / "big"
        big.mkdir()
        (big / "voices.yaml").write_text(big_spec(), encoding="utf-8")
        for where in (shipped, big):
            print(f"setup: first build of {where.name} ...", flush=True)
            started = time.perf_counter()
            subprocess.run(build, cwd=where, env=offline_env, check=True,
                           capture_output=True)
            print(f"  {time.perf_counter() - started:.1f} s", flush=True)
        cases = [
            ("baseline: import numpy, yaml, jinja2, click",
             [py, "-c", "import numpy, yaml, jinja2, click"], shipped, base_env),
            ("no-op build, shipped voices.yaml (edge refused at once)", build, shipped,
             offline_env),
            ("no-op build, shipped voices.yaml (default edge endpoint)", build, shipped,
             base_env),
            ("no-op build, 200-clip espeak spec", build, big, offline_env),
        ]
        times: dict[str, list[float]] = {name: [] for name, *_ in cases}
        for _ in range(args.runs):
            for name, cmd, cwd, env in cases:
                times[name].append(run(cmd, cwd, env))
    base = statistics.median(times[cases[0][0]])
    print(f"\n{args.runs} runs each, interleaved; wall time per process")
    print(f"{'case':<58} {'median':>8} {'min':>8} {'x baseline':>11}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<58} {med:7.3f}s {min(values):7.3f}s {med / base:10.2f}x")
    print("target: shipped voices.yaml no-op build <= 2.00x baseline")


if __name__ == "__main__":
    main()
