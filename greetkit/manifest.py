"""``greetings/manifest.json``: the index of a built greeting bank.

The manifest is the only file readers trust. It names every clip, the immutable WAV holding
its bytes, and that file's checksum. The build writes it last and atomically, so a reader sees
either the old bank or the new one, never a mix.

Format 1 (documented in the README):

.. code-block:: json

    {"format": 1, "version": 7, "built_at": "...", "generator": "greetkit 0.1.0",
     "default_language": "en", "languages": ["en", "zh"], "phrases": ["default", ...],
     "clips": [{"key": "en_default", "phrase": "default", "language": "en", "text": "...",
                "engine": "espeak", "voice": "en-us", "preferred_engine": "edge", "draft": true,
                "draft_reason": "...", "content_key": "...", "file": "clips/en_default.<k>.wav",
                "sha256": "...", "bytes": 123, "data_offset": 44, "sample_rate": 48000,
                "channels": 1, "samples": 96000, "duration": 2.0, "lufs": -18.0,
                "true_peak_db": -1.6, "target_lufs": -18.0, "true_peak_ceiling_db": -1.5,
                "gain_db": 3.2, "limiter_db": 0.0, "warnings": [],
                "variants": [{"sample_rate": 24000, "file": "...", "sha256": "...",
                              "bytes": 1, "data_offset": 44, "samples": 48000,
                              "lufs": -18.0, "true_peak_db": -1.7}]}]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from greetkit.errors import StoreError

#: The manifest layout this greetkit writes and reads. Bump on incompatible changes.
FORMAT = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, kw_only=True)
class Variant:
    """The same clip at another output sample rate (48 kHz is the clip itself)."""

    sample_rate: int
    file: str
    sha256: str
    bytes: int
    data_offset: int
    samples: int
    lufs: float
    true_peak_db: float


@dataclass(frozen=True, kw_only=True)
class ClipEntry:
    """One built clip, as recorded in the manifest."""

    key: str
    phrase: str
    language: str
    text: str
    engine: str
    voice: str
    preferred_engine: str
    draft: bool
    content_key: str
    file: str
    sha256: str
    bytes: int
    data_offset: int
    sample_rate: int
    channels: int
    samples: int
    duration: float
    lufs: float
    true_peak_db: float
    target_lufs: float
    true_peak_ceiling_db: float
    gain_db: float
    limiter_db: float
    draft_reason: str | None = None
    warnings: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ()

    def variant(self, sample_rate: int) -> Variant | None:
        """The stored variant at ``sample_rate``, or None (48 kHz is the entry itself)."""
        for v in self.variants:
            if v.sample_rate == sample_rate:
                return v
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        d["variants"] = [asdict(v) for v in self.variants]
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClipEntry:
        kwargs = {k: v for k, v in data.items() if k in _ENTRY_FIELDS}
        kwargs["warnings"] = tuple(data.get("warnings", ()))
        kwargs["variants"] = tuple(
            Variant(**{k: v[k] for k in _VARIANT_FIELDS}) for v in data.get("variants", ())
        )
        return cls(**kwargs)


# Computed once: dataclasses.fields() per entry is a measurable share of a 200-clip load.
_ENTRY_FIELDS = frozenset(f.name for f in fields(ClipEntry))
_VARIANT_FIELDS = tuple(f.name for f in fields(Variant))


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A whole bank: every clip plus what the loader needs to choose between them."""

    version: int
    built_at: str
    generator: str
    default_language: str
    languages: tuple[str, ...]
    phrases: tuple[str, ...]
    clips: tuple[ClipEntry, ...]
    format: int = FORMAT
    #: phrase -> {"text": {language: text}} for clips that could not be built; the loader
    #: speaks these with live TTS.
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def by_key(self) -> dict[str, ClipEntry]:
        return {c.key: c for c in self.clips}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "built_at": self.built_at,
            "generator": self.generator,
            "default_language": self.default_language,
            "languages": list(self.languages),
            "phrases": list(self.phrases),
            "texts": {p: dict(t) for p, t in self.texts.items()},
            "clips": [c.to_json() for c in self.clips],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = MANIFEST_NAME) -> Manifest:
        fmt = data.get("format")
        if fmt != FORMAT:
            raise StoreError(
                f"{source}: manifest format {fmt!r} is not supported by this greetkit "
                f"(reads format {FORMAT}); upgrade greetkit or rebuild the bank"
            )
        try:
            return cls(
                format=FORMAT,
                version=int(data["version"]),
                built_at=str(data["built_at"]),
                generator=str(data.get("generator", "")),
                default_language=str(data["default_language"]),
                languages=tuple(data.get("languages", ())),
                phrases=tuple(data.get("phrases", ())),
                texts={p: dict(t) for p, t in data.get("texts", {}).items()},
                clips=tuple(ClipEntry.from_json(c) for c in data["clips"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(
                f"{source}: manifest is malformed ({type(exc).__name__}: {exc}); "
                "rebuild with 'greetkit build --force'"
            ) from exc


def read_manifest(directory: Path) -> Manifest | None:
    """Read ``directory/manifest.json``; None when there is none yet.

    Raises :class:`StoreError` for unreadable JSON or an unknown format.
    """
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read manifest ({exc.strerror})") from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(
            f"{path}: manifest is not valid JSON ({exc}); rebuild with 'greetkit build --force'"
        ) from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path}: manifest is not a JSON object; rebuild the bank")
    return Manifest.from_json(data, source=str(path))


def clip_keys(clips: Sequence[ClipEntry]) -> list[str]:
    return [c.key for c in clips]
