"""Recorded takes (greetkit/engines/recorded.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from greetkit.engines.base import RenderRequest
from greetkit.engines.recorded import RecordedEngine
from greetkit.errors import EngineError


def read(path: Path) -> np.ndarray:
    req = RenderRequest(key="k", text="hi", language="en", voice="human",
                        options={"recording": str(path)})
    out = asyncio.run(RecordedEngine().render(req))
    return out.samples


@pytest.mark.parametrize("ext,fmt", [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG")])
def test_reads_supported_formats(tmp_path: Path, ext: str, fmt: str) -> None:
    """WAV, FLAC and OGG takes decode to float samples of the right length."""
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    path = tmp_path / f"take.{ext}"
    sf.write(path, tone, 16000, format=fmt)
    got = read(path)
    assert got.shape[0] == 8000 and abs(float(np.abs(got).max()) - 0.5) < 0.05


def test_unsupported_or_corrupt_files_are_clear_errors(tmp_path: Path) -> None:
    """A .m4a is refused by name; garbage in a .wav says it cannot be decoded."""
    (tmp_path / "take.m4a").write_bytes(b"x")
    with pytest.raises(EngineError, match=r"unsupported recording format '\.m4a'"):
        read(tmp_path / "take.m4a")
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(EngineError, match="cannot decode recording"):
        read(tmp_path / "bad.wav")


def test_take_digest_changes_with_content(tmp_path: Path) -> None:
    """A new take gets a new digest (and so a new content key)."""
    p = tmp_path / "t.wav"
    sf.write(p, np.zeros(10), 8000)
    a = RecordedEngine.take_digest(p)
    sf.write(p, np.ones(10) * 0.1, 8000)
    assert RecordedEngine.take_digest(p) != a
