"""edge engine bench (issue 5): 40 clips against a server that allows 4 connections.

    python bench/edge.py            # ~30 s on 2 cores

1. Engine level: 40 renders through the real edge_tts client and the tests' local edge server
   (tests/edge_server.py), each answer delayed by LATENCY seconds like a remote service,
   at engine concurrency 1, 2 and 4. Baseline: concurrency 1 in the same process. With the
   server's limit at 4, the ideal time is 40 / c x LATENCY; the table shows how close it gets,
   the most connections the server ever saw at once, and how many it had to refuse.
2. Build level: ``greetkit build`` of a voices.yaml with 40 phrases + fallback, with the offline
   espeak engine (baseline: same DSP, no network) and with edge through the same server at zero
   and at LATENCY seconds per answer.

Not a test: nothing is asserted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from greetkit.engines.base import RenderRequest
from greetkit.engines.edge import EdgeEngine

# The edge protocol server is a test fixture, not part of the package: it lives in tests/ (and
# imports as ``edge_server`` there, as the tests import it), so put tests/ on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from edge_server import EdgeServer, Step

N = 40
LATENCY = 0.25
LIMIT = 4


async def _renders(engine: EdgeEngine) -> None:
    await asyncio.gather(*(engine.render(RenderRequest(
        key=f"k{i}", text=f"Hello number {i}. Welcome back!", language="en",
        voice="en-US-AvaNeural")) for i in range(N)))


def engine_level(server: EdgeServer) -> None:
    print(f"1. engine: {N} renders, server latency {LATENCY}s, server limit {LIMIT} connections")
    print(f"{'concurrency':>11} {'seconds':>8} {'ideal':>6} {'vs c=1':>7} {'max open':>8} "
          f"{'refused':>7}")
    # Warm-up (not timed): the server synthesizes each text once and caches it, so the timed
    # runs compare connection scheduling, not espeak/MP3 encoding.
    server.default = Step.ok()
    asyncio.run(_renders(EdgeEngine(max_concurrency=LIMIT, backoff=0.01, breaker=0)))
    server.default = Step.ok(delay=LATENCY)
    base = None
    for c in (1, 2, 4):
        server.reset()
        engine = EdgeEngine(max_concurrency=c, backoff=0.01, breaker=0)
        started = time.perf_counter()
        asyncio.run(_renders(engine))
        took = time.perf_counter() - started
        base = base or took
        print(f"{c:>11} {took:>8.2f} {N / c * LATENCY:>6.2f} {base / took:>6.2f}x "
              f"{server.max_concurrent:>8} {server.over_limit:>7}")


def build_level(server: EdgeServer) -> None:
    from greetkit.build import build

    lines = ["version: 1", "defaults:", "  engine: ENGINE", "  language: en",
             "languages:", "  en:", "    voices:", "      edge: en-US-AvaNeural",
             "      espeak: en-us", "phrases:"]
    lines += [f"  p{i:02d}:\n    en: \"Hello number {i}. Welcome back!\"" for i in range(N)]
    lines += ["fallback:", "  language: en", "  text: \"One moment please.\""]
    print(f"2. build: {N + 1} edge clips through the server (limit {LIMIT})")
    print(f"{'engine':>6} {'latency':>8} {'seconds':>8} {'vs espeak':>9} {'max open':>8} "
          f"{'refused':>7} {'drafts':>6}")
    base = None
    # Baseline: the same 41 clips with the offline espeak engine (no network, same DSP). The
    # first, untimed build pays the imports and first-call costs for all rows.
    runs = (("warm-up", "espeak", 0.0), ("timed", "espeak", 0.0), ("timed", "edge", 0.0),
            ("timed", "edge", LATENCY))
    for kind, engine, latency in runs:
        server.reset()
        server.default = Step.ok(delay=latency)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "voices.yaml"
            text = "\n".join(lines).replace("ENGINE", engine) + "\n"
            config.write_text(text, encoding="utf-8")
            started = time.perf_counter()
            result = build(config)
            took = time.perf_counter() - started
        if kind == "warm-up":
            continue
        if kind == "warm-up":
            continue
        base = base or took
        print(f"{engine:>6} {latency:>8.2f} {took:>8.2f} {took / base:>8.2f}x "
              f"{server.max_concurrent:>8} {server.over_limit:>7} {len(result.drafts):>6}")


def main() -> None:
    with EdgeServer(max_connections=LIMIT, default=Step.ok(delay=LATENCY)) as server:
        os.environ["GREETKIT_EDGE_URL"] = server.url
        os.environ.setdefault("GREETKIT_EDGE_BACKOFF", "0.01")
        engine_level(server)
        build_level(server)


if __name__ == "__main__":
    main()
