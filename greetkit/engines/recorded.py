"""Recorded takes: a human's WAV/FLAC/OGG/MP3, run through the same DSP chain as TTS.

voices.yaml names the file per language (``recording: takes/en_default.wav``); the text is
still required, because the loader passes it to ``session.say`` for the transcript.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from greetkit.engines.base import RenderedAudio, RenderRequest
from greetkit.errors import EngineError

SUPPORTED = (".wav", ".flac", ".ogg", ".mp3")


class RecordedEngine:
    """Reads a recorded take from disk."""

    name: ClassVar[str] = "recorded"
    max_concurrency: ClassVar[int] = 2
    offline: ClassVar[bool] = True

    def version(self) -> str:
        import soundfile as sf

        return f"recorded; libsndfile {sf.__libsndfile_version__}"

    def check_available(self) -> None:
        return None

    def validate_voice(self, voice: str, language: str, *,
                       project_dir: Path | None = None) -> str | None:
        return None

    @staticmethod
    def take_digest(path: str | Path) -> str:
        """sha256 of the take, part of the clip's content key so a new take re-renders."""
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def _read(self, request: RenderRequest) -> RenderedAudio:
        import soundfile as sf

        raw = request.options.get("recording")
        if not raw:
            raise EngineError(f"{request.key}: no 'recording' file given", engine=self.name)
        path = Path(str(raw))
        if path.suffix.lower() not in SUPPORTED:
            raise EngineError(
                f"{path}: unsupported recording format {path.suffix!r}; use "
                + ", ".join(SUPPORTED),
                engine=self.name,
            )
        try:
            samples, rate = sf.read(str(path), dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise EngineError(
                f"{path}: cannot decode recording ({exc}); re-export it as WAV or FLAC",
                engine=self.name,
            ) from exc
        if samples.size == 0:
            raise EngineError(f"{path}: recording is empty", engine=self.name)
        return RenderedAudio(np.asarray(samples, dtype=np.float32), int(rate),
                             {"source": path.name})

    async def render(self, request: RenderRequest) -> RenderedAudio:
        return await asyncio.to_thread(self._read, request)
