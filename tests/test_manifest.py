"""Manifest serialization (greetkit/manifest.py)."""

from __future__ import annotations

import json

import pytest

from greetkit.errors import StoreError
from greetkit.manifest import FORMAT, ClipEntry, Manifest, Variant

ENTRY = dict(key="zh_default", phrase="default", language="zh", text="你好", engine="espeak",
             voice="cmn", preferred_engine="edge", draft=True, draft_reason="edge unavailable",
             content_key="ck", file="clips/a.wav", sha256="s", bytes=10, data_offset=44,
             sample_rate=48000, channels=1, samples=3, duration=0.0001, lufs=-18.0,
             true_peak_db=-1.6, target_lufs=-18.0, true_peak_ceiling_db=-1.5, gain_db=2.0,
             limiter_db=0.5, warnings=("short",),
             variants=(Variant(sample_rate=24000, file="clips/b.wav", sha256="t", bytes=8,
                               data_offset=44, samples=2, lufs=-18.0, true_peak_db=-1.7),))


def test_round_trip_keeps_every_field() -> None:
    """dumps -> loads gives an equal manifest, Chinese text unescaped."""
    m = Manifest(version=3, built_at="t", generator="g", default_language="en",
                 languages=("en", "zh"), phrases=("default",), clips=(ClipEntry(**ENTRY),),
                 texts={"default": {"zh": "你好"}})
    text = m.dumps()
    assert "你好" in text
    again = Manifest.from_json(json.loads(text))
    assert again == m
    assert again.clips[0].variant(24000) is not None and again.clips[0].variant(16000) is None
    assert json.loads(text)["format"] == FORMAT


def test_missing_required_field_is_reported() -> None:
    """A manifest without 'clips' is malformed, with a fix."""
    with pytest.raises(StoreError, match=r"malformed .*rebuild"):
        Manifest.from_json({"format": FORMAT, "version": 1, "built_at": "t",
                            "default_language": "en"})
