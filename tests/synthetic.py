"""Synthetic banks for tests and benches: many clips of seeded noise, written through the real
store (immutable, checksummed WAVs and a manifest published last), no TTS engine needed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from greetkit.manifest import ClipEntry, Manifest
from greetkit.store import Store

RATE = 48000


def synthetic_store(root: Path, clips: int, *, seed: int, seconds: float = 0.5) -> Store:
    """Write ``clips`` clips of ``seconds`` of noise (distinct per ``seed``) into ``root`` and
    publish them as one version. Returns the store."""
    store = Store(root)
    store.prepare()
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(clips):
        pcm = (rng.standard_normal(int(RATE * seconds)) * 3000).astype(np.int16)
        key = f"c{i:04d}"
        stored = store.write_clip(f"{key}.{seed:016x}", pcm, RATE)
        entries.append(ClipEntry(
            key=key, phrase=key, language="en", text=f"clip {i}", engine="synthetic",
            voice="noise", preferred_engine="synthetic", draft=False, content_key=f"{seed}",
            channels=1, duration=seconds,
            files={RATE: stored.record(lufs=-18.0, true_peak_db=-1.5)},
            target_lufs=-18.0, true_peak_ceiling_db=-1.5, gain_db=0.0, limiter_db=0.0))
    old = store.manifest()
    store.publish(Manifest(
        version=(old.version + 1) if old else 1,
        built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        generator="tests/synthetic.py", default_language="en", languages=("en",),
        phrases=tuple(e.phrase for e in entries), clips=tuple(entries)))
    return store
