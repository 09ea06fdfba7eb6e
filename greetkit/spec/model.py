"""What the rest of greetkit sees of a voices.yaml: frozen dataclasses and the limits.

Code past :func:`greetkit.spec.load_spec` reads these, never raw YAML values.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greetkit.errors import SpecIssue
from greetkit.manifest import BASE_RATE as BASE_RATE
from greetkit.params import MAX_CLIP_SECONDS as MAX_CLIP_SECONDS

SCHEMA_VERSION = 1
#: Output rates a variant may be built at; 48 kHz is always built.
ALLOWED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
DRAFT_ENGINE = "espeak"

# Limits that turn a runaway spec into a clear error instead of runaway work.
MAX_TEXT_CHARS = 1000
MAX_CLIPS = 500
MAX_NODES = 20000
#: Deepest nesting of mappings/lists; deeper documents (or alias chains) would exhaust the
#: recursion of the YAML composer and of the converter.
MAX_DEPTH = 32
MAX_FILE_BYTES = 1_000_000
#: Largest recorded take, in bytes: 60 s of 192 kHz stereo 32-bit audio is ~92 MB.
MAX_RECORDING_BYTES = 100_000_000
RECORDING_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class Loudness:
    """Loudness target and true-peak ceiling for a clip."""

    target_lufs: float
    true_peak_ceiling_db: float
    preset: str | None = None


@dataclass(frozen=True)
class Language:
    """A declared language: its voice per engine and delivery options."""

    code: str
    voices: Mapping[str, str]
    options: Mapping[str, str]
    engine: str | None = None


@dataclass(frozen=True)
class ClipSpec:
    """One clip to build: a phrase in a language, fully resolved (see :mod:`greetkit.resolve`)."""

    key: str
    phrase: str
    language: str
    text: str
    engine: str
    voice: str
    #: espeak voice used when ``engine`` cannot be reached (a draft).
    draft_voice: str | None
    options: Mapping[str, Any]
    loudness: Loudness
    line: int | None = None
    #: Rates the clip is stored at: 48 kHz first, then the extra variants.
    sample_rates: tuple[int, ...] = (BASE_RATE,)


@dataclass(frozen=True)
class Spec:
    """A validated voices.yaml."""

    path: Path
    project_dir: Path
    default_engine: str
    default_language: str
    languages: Mapping[str, Language]
    variables: Mapping[str, Any]
    phrases: tuple[str, ...]
    clips: tuple[ClipSpec, ...]
    sample_rates: tuple[int, ...]
    loudness: Loudness
    warnings: tuple[SpecIssue, ...] = field(default=())
    #: Phrases written for some languages only on purpose (``languages: [...]``).
    only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def clip(self, key: str) -> ClipSpec:
        for c in self.clips:
            if c.key == key:
                return c
        raise KeyError(key)


def clip_key(language: str, phrase: str) -> str:
    """The store key of a phrase in a language: ``en_default``; the fallback is ``fallback``."""
    return "fallback" if phrase == "fallback" else f"{language}_{phrase}"


def normalize_language(code: str) -> str:
    """A language code as the loader matches it: 'zh_TW' and 'zh-tw' are one language."""
    return code.strip().replace("_", "-").lower()


def store_identity(key: str) -> str:
    """What must differ between two clips' keys (case-insensitive stores, '-' ~ '_')."""
    return key.casefold().replace("-", "_")


def is_speakable(text: str) -> bool:
    """True when ``text`` has at least one letter or digit (punctuation alone yields no audio)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)
