"""The engine Protocol: what every TTS or audio source must provide.

An engine turns one :class:`RenderRequest` into :class:`RenderedAudio` (float samples at the
engine's own rate). Everything after that (mono, trim, loudness, resampling, int16) is the
DSP chain's job, so engines stay small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, kw_only=True)
class RenderRequest:
    """What to render: text in a language with a voice, plus engine options.

    ``options`` holds engine-specific settings from voices.yaml (rate, pitch, volume,
    the path of a recorded take ...). ``project_dir`` is the directory of voices.yaml, for
    engines that read files.
    """

    key: str
    text: str
    language: str
    voice: str
    options: Mapping[str, Any] = field(default_factory=dict)
    project_dir: Path = Path(".")


@dataclass(frozen=True)
class RenderedAudio:
    """Engine output: float32 samples in [-1, 1], shape ``(frames,)`` or ``(frames, channels)``."""

    samples: npt.NDArray[np.float32]
    sample_rate: int
    #: Anything worth keeping about the render (boundaries, retries, source format).
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return float(self.samples.shape[0]) / self.sample_rate


@runtime_checkable
class Engine(Protocol):
    """A source of speech audio.

    Implementations are registered by name (see :mod:`greetkit.engines`). ``render`` is
    async so network engines can overlap; CPU-bound engines run their work in a thread.
    """

    #: Registry name used in voices.yaml (``engine: espeak``).
    name: ClassVar[str]
    #: How many renders the build may run at once with this engine.
    max_concurrency: ClassVar[int]
    #: True when the engine needs nothing outside this machine (used for draft fallback).
    offline: ClassVar[bool]

    def version(self) -> str:
        """A string that changes whenever the engine may produce different audio.

        It is part of every clip's content key, so upgrading an engine re-renders clips.
        """
        ...

    def check_available(self) -> None:
        """Raise :class:`~greetkit.errors.EngineUnavailable` quickly if renders cannot work now.

        Called once per build, never per clip.
        """
        ...

    def validate_voice(self, voice: str, language: str, *,
                       project_dir: Path | None = None) -> str | None:
        """Return a problem description (with a suggestion) if ``voice`` is unknown, else None.

        ``project_dir`` is the directory of voices.yaml, for engines that keep a voice list
        cached in the project.
        """
        ...

    async def render(self, request: RenderRequest) -> RenderedAudio:
        """Render one clip. Raise :class:`~greetkit.errors.EngineError` on failure."""
        ...


@dataclass(frozen=True)
class VoiceInfo:
    """One voice an engine offers, as ``greetkit voices`` lists it."""

    name: str
    #: Language codes the voice speaks; ``greetkit voices --language`` matches these.
    languages: tuple[str, ...]
    #: The table's further cells, in :attr:`VoiceList.columns` order.
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class VoiceList:
    """An engine's voice catalogue: column headings after VOICE, the voices, and where the
    list came from (empty when it ships with the engine)."""

    columns: tuple[str, ...]
    voices: tuple[VoiceInfo, ...]
    source: str = ""


@runtime_checkable
class ListsVoices(Protocol):
    """An engine with a voice catalogue (optional; ``greetkit voices`` asks for it)."""

    def voice_list(self, *, project_dir: Path | None = None) -> VoiceList:
        """The voices this engine offers (``project_dir``: the directory of voices.yaml)."""
        ...


@runtime_checkable
class RefreshesVoices(ListsVoices, Protocol):
    """An engine whose catalogue can be fetched anew and cached in the project."""

    def refresh_voices(self, project_dir: Path) -> Path:
        """Fetch the full voice list and cache it in ``project_dir``; returns the cache path."""
        ...
