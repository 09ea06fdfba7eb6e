"""Loader bench (issues 4 and 8): prints tables and ratios against named baselines.

    python bench/loader.py            # ~30 s on 2 cores; writes its stores under a temp dir

1. Time to first / last frame of a 3 s clip, in one process: greetkit ``Bank.frames`` vs
   livekit's ``utils.audio.audio_frames_from_file`` on the same WAV vs an async generator
   over pre-built ``rtc.AudioFrame`` objects (the floor).
2. Load time and RSS for a bank of 200 clips (10 min at 48 kHz + 24 kHz variants).
3. Private memory of 4 processes forked after load, each playing the whole bank.
4. Per-job cost: a process forked after ``import greetkit.preload`` vs one forked before
   the bank was loaded that calls ``greetkit.load`` itself (LiveKit's prewarm pattern).
5. First ``say`` -> first frame at a real ``AgentSession``'s audio output in a fresh job
   process: README prewarm pattern (``greetkit.load`` in the job) vs ``greetkit.preload``
   vs a warm say (the job's second) vs the floor (``session.say`` over pre-built
   ``rtc.AudioFrame`` objects).

Not a test: nothing is asserted; targets from issue 4 are printed beside the figures.
The clips are synthetic (tones + noise) written through greetkit's store format.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

N_CLIPS = 200
CLIP_SECONDS = 3.0
RATES = (48000, 24000)


# -- store ------------------------------------------------------------------------------------

def write_bank(root: Path, n: int, seconds: float, seed: int = 7) -> Path:
    """A store of ``n`` synthetic clips (tone + noise) in greetkit's format, 48k + 24k."""
    import soxr

    from greetkit.manifest import ClipEntry, ClipFile, Manifest
    from greetkit.store import CLIPS_DIR, Store
    from greetkit.wav import encode, read_header

    store = Store(root)
    store.prepare()
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        t = np.arange(int(seconds * 48000)) / 48000
        x = (0.3 * np.sin(2 * np.pi * (200 + i) * t) + 0.05 * rng.standard_normal(t.size))
        files = {}
        for rate in RATES:
            y = x if rate == 48000 else soxr.resample(x, 48000, rate)
            pcm = np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)
            data = encode(pcm, rate)
            sha = hashlib.sha256(data).hexdigest()
            name = f"c{i:03d}.{'b' * 16}" + ("" if rate == 48000 else f".{rate}") + \
                f"-{sha[:12]}.wav"
            (store.clips / name).write_bytes(data)  # bench only: no fsync needed
            files[rate] = ClipFile(sample_rate=rate, file=f"{CLIPS_DIR}/{name}", sha256=sha,
                                   bytes=len(data), data_offset=read_header(data).data_offset,
                                   samples=int(pcm.size), lufs=-18.0, true_peak_db=-3.0)
        entries.append(ClipEntry(
            key=f"c{i:03d}", phrase=f"p{i:03d}", language="en", text=f"clip {i}",
            engine="bench", voice="tone", preferred_engine="bench", draft=False,
            content_key="b" * 64, channels=1, duration=files[48000].samples / 48000,
            target_lufs=-18.0, true_peak_ceiling_db=-1.5, gain_db=0.0, limiter_db=0.0,
            files=files))
    store.publish(Manifest(version=1, built_at="bench", generator="bench",
                           default_language="en", languages=("en",),
                           phrases=tuple(e.phrase for e in entries), clips=tuple(entries)))
    return root


# -- 1. first / last frame ----------------------------------------------------------------------

async def _time_stream(make: Callable[[], AsyncIterator[Any]]) -> tuple[float, float, int]:
    t0 = time.perf_counter_ns()
    it = make()
    first = await it.__anext__()
    t1 = time.perf_counter_ns()
    n = first.samples_per_channel
    async for frame in it:
        n += frame.samples_per_channel
    t2 = time.perf_counter_ns()
    return (t1 - t0) / 1e3, (t2 - t0) / 1e3, n


def bench_frames(store: Path) -> dict[str, float]:
    from livekit import rtc
    from livekit.agents.utils.audio import audio_frames_from_file

    import greetkit
    import greetkit.agents

    bank = greetkit.load(store)
    key = "c000"
    clip = bank[key]
    wav = str(store / clip.entry.base.file)
    pcm = clip.samples
    prebuilt = [rtc.AudioFrame(pcm[i:i + 960].tobytes(), 48000, 1, len(pcm[i:i + 960]))
                for i in range(0, len(pcm), 960)]

    async def floor() -> AsyncIterator[rtc.AudioFrame]:
        for f in prebuilt:
            yield f

    async def run() -> dict[str, list[tuple[float, float, int]]]:
        out: dict[str, list[tuple[float, float, int]]] = {}
        # The very first play in a process also checks the clip's sha256 (lazy policy).
        out["greetkit first play (sha256 check)"] = [
            await _time_stream(lambda: bank.frames(key))]
        for _ in range(5):  # warm-up for all three
            await _time_stream(lambda: bank.frames(key))
            await _time_stream(floor)
            await _time_stream(lambda: audio_frames_from_file(wav))
        rounds = {"greetkit Bank.frames": (lambda: bank.frames(key), 300),
                  "pre-built frames (floor)": (floor, 300),
                  "livekit audio_frames_from_file": (lambda: audio_frames_from_file(wav), 40)}
        for name in rounds:
            out[name] = []
        # Interleaved so drift (CPU frequency, other load) hits every contender alike.
        for i in range(300):
            for name, (make, n) in rounds.items():
                if i < n:
                    out[name].append(await _time_stream(make))
        return out

    results = asyncio.run(run())
    print(f"\n1. Time to first and last frame, 3 s clip ({len(pcm)} samples, 48 kHz), "
          "median of interleaved runs, one process")
    print(f"   {'source':40} {'runs':>5} {'first frame':>13} {'last frame':>13} {'samples':>8}")
    med: dict[str, tuple[float, float]] = {}
    for name, rows in results.items():
        first = statistics.median(r[0] for r in rows)
        last = statistics.median(r[1] for r in rows)
        med[name] = (first, last)
        print(f"   {name:40} {len(rows):>5} {first:>10.1f} us {last:>10.1f} us "
              f"{rows[0][2]:>8}")
    g, f, lk = (med["greetkit Bank.frames"], med["pre-built frames (floor)"],
                med["livekit audio_frames_from_file"])
    print(f"   first frame: livekit / greetkit = {lk[0] / g[0]:.0f}x (target >= 100x); "
          f"greetkit / floor = {g[0] / f[0]:.2f}x (target <= 2x)")
    print(f"   last frame:  livekit / greetkit = {lk[1] / g[1]:.1f}x; "
          f"greetkit / floor = {g[1] / f[1]:.2f}x")
    return {"first_ratio_livekit": lk[0] / g[0], "first_ratio_floor": g[0] / f[0]}


# -- helpers run in child processes --------------------------------------------------------------

CHILD_LOAD = r"""
import json, os, resource, sys, time
def rss_kb():
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
import numpy, greetkit.loader
store = sys.argv[1]
base = rss_kb()
times, keep = [], []
for i in range(7):
    t = time.perf_counter()
    bank = greetkit.load(store)
    times.append((time.perf_counter() - t) * 1000)
    keep.append(bank)
    if i == 0:
        after_one = rss_kb()
after_load = rss_kb()
total = 0
for clip in bank.values():
    for r in clip.rates:
        total += int(clip.pcm(r).sum(dtype="int64") != 0)
after_touch = rss_kb()
print(json.dumps({"times": times, "base": base, "after_one": after_one,
                  "after_load": after_load,
                  "after_touch": after_touch, "clips": len(bank), "bytes": bank.nbytes,
                  "seconds": sum(c.duration for c in bank.values())}))
"""


def bench_load(store: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD_LOAD, str(store)], capture_output=True,
                         text=True, check=True)
    r = json.loads(out.stdout)
    times = sorted(r["times"])
    print(f"\n2. Load a bank of {r['clips']} clips ({r['seconds'] / 60:.1f} min of audio at "
          f"48 kHz + 24 kHz variants, {r['bytes'] / 1e6:.1f} MB of files), fresh process")
    print(f"   greetkit.load: first {r['times'][0]:.1f} ms, median of 7 "
          f"{statistics.median(times):.1f} ms, min {times[0]:.1f} ms (target < 50 ms)")
    print(f"   RSS: before {r['base'] / 1024:.1f} MB, after one load +"
          f"{(r['after_one'] - r['base']) / 1024:.2f} MB, with 7 banks loaded +"
          f"{(r['after_load'] - r['base']) / 1024:.2f} MB, after reading "
          f"every sample +{(r['after_touch'] - r['base']) / 1024:.1f} MB (page-cache pages, "
          "shared, see 3.)")


def _smaps_rollup(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
        for line in f:
            head = line.split()
            if head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
                out[head[0][:-1]] = int(head[1])
    return out


def _mapped_private_kb(pid: int, prefix: str) -> tuple[int, int]:
    """(private kB, Pss kB) of the mappings of files under ``prefix``."""
    private = pss = 0
    current = False
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:
                current = len(head) >= 6 and head[5].startswith(prefix)
            elif current and head[0] in ("Private_Clean:", "Private_Dirty:"):
                private += int(head[1])
            elif current and head[0] == "Pss:":
                pss += int(head[1])
    return private, pss


def _private(rollup: dict[str, int]) -> int:
    return rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)


def bench_fork(store: Path) -> None:
    import greetkit

    bank = greetkit.load(store, verify=True)  # reads (and so caches) every page once
    prefix = str(store.resolve())
    gc.collect()
    gc.freeze()  # what LiveKit's forkserver preload does, so children's GC copies nothing
    rows = []
    pipes = []
    for _ in range(4):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                before = _smaps_rollup(os.getpid())

                async def play_all() -> int:
                    n = 0
                    for key in bank:
                        for rate in bank[key].rates:
                            async for frame in bank.frames(key, sample_rate=rate):
                                n += frame.samples_per_channel
                    return n

                played = asyncio.run(play_all())
                after = _smaps_rollup(os.getpid())
                file_private, file_pss = _mapped_private_kb(os.getpid(), prefix)
                os.write(w, json.dumps({
                    "played": played, "added_private": _private(after) - _private(before),
                    "private": _private(after), "pss": after.get("Pss", 0),
                    "file_private": file_private, "file_pss": file_pss}).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        pipes.append((pid, r))
    for pid, r in pipes:
        with os.fdopen(r) as f:
            rows.append(json.loads(f.read()))
        os.waitpid(pid, 0)
    gc.unfreeze()
    print(f"\n3. Four processes forked after load, each playing all {len(bank)} clips at both "
          f"rates through Bank.frames ({bank.nbytes / 1e6:.1f} MB mapped)")
    print(f"   {'child':>5} {'samples played':>15} {'bank files private':>19} "
          f"{'bank files Pss':>15} {'private added by playing':>25}")
    for i, row in enumerate(rows):
        print(f"   {i:>5} {row['played']:>15} {row['file_private'] / 1024:>16.2f} MB "
              f"{row['file_pss'] / 1024:>12.2f} MB {row['added_private'] / 1024:>22.2f} MB")
    print("   target: < 5 MB private per forked process for the bank")


CHILD_JOBS = r"""
import asyncio, gc, json, os, sys, time
mode, store = sys.argv[1], sys.argv[2]
import livekit.agents  # a job process has the framework imported already
import greetkit, greetkit.agents, greetkit.loader
if mode == "preload":
    os.environ["GREETKIT_BANK"] = store
    import greetkit.preload  # what AgentServer(preload_modules=[...]) does in the forkserver
gc.collect(); gc.freeze()
results = []
for _ in range(15):
    r, w = os.pipe()
    t0 = time.monotonic_ns()
    pid = os.fork()
    if pid == 0:
        t1 = time.monotonic_ns()
        os.close(r)
        if mode != "fork only":
            loop = asyncio.new_event_loop()  # a job process runs one; not part of the cost
            t1 = time.monotonic_ns()
            if mode == "preload":
                bank = greetkit.preload.bank            # prewarm: proc.userdata[...] = this
            else:
                bank = greetkit.load(store)             # prewarm: greetkit.load(...)
            it = bank.frames(bank.resolve("p000").key)  # usable: first frame in hand
            loop.run_until_complete(it.__anext__())
        t2 = time.monotonic_ns()
        os.write(w, json.dumps([(t2 - t0) / 1e6, (t2 - t1) / 1e6]).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        results.append(json.loads(f.read()))
    os.waitpid(pid, 0)
print(json.dumps(results))
"""


def bench_jobs(store: Path) -> None:
    res = {}
    for mode in ("fork only", "preload", "load"):
        out = subprocess.run([sys.executable, "-c", CHILD_JOBS, mode, str(store)],
                             capture_output=True, text=True, check=True)
        rows = json.loads(out.stdout)
        res[mode] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
    print(f"\n4. Per-job cost: a job process forked from a parent with livekit.agents imported, "
          f"until the bank is usable (a clip resolved, its first frame in hand); median of 15, "
          f"{N_CLIPS}-clip bank")
    print(f"   {'job process':50} {'fork -> usable':>15} {'in the child':>13}")
    labels = {"fork only": "fork alone (baseline, no bank)",
              "preload": "forked after import greetkit.preload",
              "load": "forked, then greetkit.load in prewarm (cold)"}
    for mode, (total, child) in res.items():
        print(f"   {labels[mode]:50} {total:>12.2f} ms {child:>10.3f} ms")
    print(f"   in-child cost: greetkit.load / preload = {res['load'][1] / res['preload'][1]:.0f}x "
          f"({res['load'][1]:.2f} ms vs {res['preload'][1]:.3f} ms per job)")


CHILD_SAY = r"""
import asyncio, json, os, sys, time
mode, store, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
import livekit.agents  # LiveKit's forkserver has the framework imported
if mode == "preload":
    os.environ["GREETKIT_BANK"] = store
    import greetkit.preload  # AgentServer(preload_modules=["greetkit.preload"])
results = []
for _ in range(runs):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        if mode == "preload":
            bank = greetkit.preload.bank                  # README: prewarm picks it up
        else:
            import greetkit
            bank = greetkit.load(store)                    # README: prewarm loads it
        from livekit import rtc
        from livekit.agents import Agent, AgentSession
        from livekit.agents.voice import io

        class Sink(io.AudioOutput):
            def __init__(self):
                super().__init__(label="bench", capabilities=io.AudioOutputCapabilities(
                    pause=True), sample_rate=48000)
                self.first_at, self.open, self.pushed = None, False, 0.0
            async def capture_frame(self, frame):
                await super().capture_frame(frame)
                if self.first_at is None:
                    self.first_at = time.perf_counter()
                if not self.open:
                    self.open = True
                    self.on_playback_started(created_at=time.time())
                self.pushed += frame.duration
            def flush(self):
                super().flush()
                self._end(False)
            def clear_buffer(self):
                self._end(True)
            def _end(self, interrupted):
                if self.open:
                    self.open = False
                    self.on_playback_finished(playback_position=self.pushed,
                                              interrupted=interrupted)
                    self.pushed = 0.0

        async def job():
            session = AgentSession()
            sink = Sink()
            session.output.audio = sink
            await session.start(agent=Agent(instructions="Greet."), record=False)
            out = []

            async def timed(start):
                sink.first_at = None
                t = time.perf_counter()
                handle = start()
                while sink.first_at is None:
                    await asyncio.sleep(0)
                out.append((sink.first_at - t) * 1000)
                await handle.wait_for_playout()

            await timed(lambda: bank.say(session, "p000"))     # the job's first say
            await timed(lambda: bank.say(session, "p001"))     # a warm say
            clip = bank.select("p002").clip
            prebuilt = [rtc.AudioFrame(bytes(c), 48000, 1, len(c) // 2)
                        for c in clip.chunks(48000, 960)]

            async def floor():
                for f in prebuilt:
                    yield f
            await timed(lambda: session.say(clip.text, audio=floor()))
            await session.aclose()
            return out

        res = loop.run_until_complete(job())
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        results.append(json.loads(f.read()))
    os.waitpid(pid, 0)
print(json.dumps(results))
"""

SAY_RUNS = 11


def bench_first_say(store: Path) -> None:
    rows = {}
    for mode in ("load", "preload"):
        out = subprocess.run([sys.executable, "-c", CHILD_SAY, mode, str(store), str(SAY_RUNS)],
                             capture_output=True, text=True, check=True)
        rows[mode] = json.loads(out.stdout)
    rows_out = [  # (label, short name, median ms)
        ("README prewarm: greetkit.load in the job, first say", "README prewarm",
         statistics.median(r[0] for r in rows["load"])),
        ("preload_modules=['greetkit.preload'], first say", "preload",
         statistics.median(r[0] for r in rows["preload"])),
        ("warm say (the job's second, after preload)", "warm say",
         statistics.median(r[1] for r in rows["preload"])),
        ("floor: session.say over pre-built AudioFrames", "floor",
         statistics.median(r[2] for r in rows["preload"] + rows["load"])),
    ]
    print(f"\n5. First say -> first frame at a real AgentSession's audio output, in a fresh "
          f"job process forked from a parent with livekit.agents imported; median of "
          f"{SAY_RUNS} jobs each, {N_CLIPS}-clip bank")
    print(f"   {'job':55} {'say -> first frame':>19} {'/ floor':>8}")
    floor = rows_out[-1][2]
    for label, _, ms in rows_out:
        print(f"   {label:55} {ms:>16.3f} ms {ms / floor:>7.2f}x")
    print(f"   README prewarm / preload = {rows_out[0][2] / rows_out[1][2]:.1f}x")


def main() -> None:
    import livekit.agents

    print(f"greetkit loader bench - Python {sys.version.split()[0]}, livekit-agents "
          f"{livekit.agents.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="greetkit-bench-") as tmp:
        t = time.perf_counter()
        bank_dir = write_bank(Path(tmp) / "bank200", N_CLIPS, CLIP_SECONDS)
        print(f"(wrote the {N_CLIPS}-clip store in {time.perf_counter() - t:.1f} s)")
        bench_frames(bank_dir)
        bench_load(bank_dir)
        bench_fork(bank_dir)
        bench_jobs(bank_dir)
        bench_first_say(bank_dir)


if __name__ == "__main__":
    main()
