"""Helpers for testing your own agent against a greeting bank (like ``structlog.testing``).

Two pieces, both offline and deterministic:

* :class:`FakeEngine`, an engine that "speaks" any text as a short run of tones (one per
  character, a pause per space) with silence around it, and records every request. Its audio
  goes through the same DSP chain as any engine's (trim, BS.1770 loudness, true-peak limit,
  resampling), so clips built with it behave like real ones in a player. :func:`fake_engine`
  registers one under a name for a ``with`` block.
* :func:`build_bank`, which builds a bank from a few phrases with that engine into a directory
  (a pytest ``tmp_path``) and returns the store to load::

      from greetkit.loader import load
      from greetkit.testing import build_bank

      def test_my_agent_greets(tmp_path):
          bank = load(build_bank(tmp_path, {"welcome": "Hello there!"}))
          assert bank.select("welcome", "en").clip is not None
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from greetkit.engines import RenderedAudio, RenderRequest, register

__all__ = ["FakeEngine", "build_bank", "fake_engine", "fake_speech"]

#: Seconds of each piece of fake speech: a character's tone, a space's pause, and the
#: silence before and after (which the DSP chain trims down to its pad).
TONE_SECONDS = 0.06
PAUSE_SECONDS = 0.08
EDGE_SILENCE_SECONDS = 0.25


def fake_speech(text: str, sample_rate: int = 24000) -> npt.NDArray[np.float32]:
    """The fake engine's audio for ``text``: float32 mono in [-1, 1], the same every time.

    Each non-space character is a Hann-windowed tone (a fundamental between 120 and 270 Hz
    picked by the character, plus two weaker harmonics, like a voiced syllable); each space
    is a pause; a quarter second of silence surrounds the whole.

    >>> fake_speech("hi", 8000).shape
    (4960,)
    """
    tone = round(TONE_SECONDS * sample_rate)
    t = np.arange(tone) / sample_rate
    window = np.hanning(tone)
    edge = np.zeros(round(EDGE_SILENCE_SECONDS * sample_rate))
    parts = [edge]
    for char in text:
        if char.isspace():
            parts.append(np.zeros(round(PAUSE_SECONDS * sample_rate)))
            continue
        f0 = 120.0 + 10.0 * (ord(char) % 16)
        voiced = sum(a * np.sin(2 * np.pi * f0 * k * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
        parts.append(0.2 * window * voiced)
    parts.append(edge)
    return np.concatenate(parts).astype(np.float32)


class FakeEngine:
    """A deterministic offline engine for tests; every render is kept in :attr:`requests`.

    It accepts any voice and never fails. Use it through :func:`fake_engine` (or
    :func:`greetkit.engines.register`) so voices.yaml can name it.
    """

    name: ClassVar[str] = "fake"
    max_concurrency: ClassVar[int] = 4
    offline: ClassVar[bool] = True

    def __init__(self, *, sample_rate: int = 24000) -> None:
        self.sample_rate = sample_rate
        #: Every request rendered, in the order they arrived.
        self.requests: list[RenderRequest] = []

    def version(self) -> str:
        return f"fake-1/{self.sample_rate}"

    def check_available(self) -> None:
        """Always available: it needs nothing outside this process."""

    def validate_voice(self, voice: str, language: str, *,
                       project_dir: Path | None = None) -> str | None:
        return None

    async def render(self, request: RenderRequest) -> RenderedAudio:
        self.requests.append(request)
        return RenderedAudio(fake_speech(request.text, self.sample_rate), self.sample_rate)


@contextlib.contextmanager
def fake_engine(name: str = "fake", *, sample_rate: int = 24000) -> Iterator[FakeEngine]:
    """Register a new :class:`FakeEngine` as engine ``name`` for the ``with`` block.

    ``name`` may be a built-in engine's (``"edge"``) to build a real voices.yaml offline::

        with fake_engine("edge") as engine:
            build("voices.yaml")
        assert engine.requests
    """
    engine = FakeEngine(sample_rate=sample_rate)
    previous = register(name, engine)
    try:
        yield engine
    finally:
        register(name, previous)


def build_bank(directory: str | os.PathLike[str],
               phrases: Mapping[str, str | Mapping[str, str]], *,
               language: str = "en", fallback: str | None = None,
               sample_rates: Sequence[int] = (48000, 16000),
               engine: FakeEngine | None = None) -> Path:
    """Build a bank of ``phrases`` with a fake engine into ``directory``; return its store.

    ``phrases`` maps a phrase name to its text in ``language``, or to ``{language: text}``.
    ``fallback`` is the text of the bank's fallback clip (key ``fallback``), if any. Pass your
    own ``engine`` to look at its :attr:`~FakeEngine.requests` afterwards. The spec is written
    to ``directory/voices.yaml`` and the bank to ``directory/greetings``, which is returned
    for :func:`greetkit.load`::

        store = build_bank(tmp_path, {"hello": {"en": "Hello!", "fr": "Bonjour !"}},
                           fallback="One moment please.")
        clip = greetkit.load(store).select("hello", "fr").clip   # fr_hello

    Building again into the same directory reuses the unchanged clips, as ``greetkit build``
    does. Like :func:`greetkit.build.build` it runs its own event loop: call it from
    synchronous code (a fixture), not from inside a running loop. Raises
    :class:`~greetkit.errors.SpecError` for a name voices.yaml would refuse (the message
    names it).
    """
    import yaml

    from greetkit.build import build
    from greetkit.errors import GreetkitError

    root = Path(directory)
    texts = {name: dict(text) if isinstance(text, Mapping) else {language: text}
             for name, text in phrases.items()}
    languages = {language, *(lang for by_lang in texts.values() for lang in by_lang)}
    spec: dict[str, object] = {
        "version": 1,
        "defaults": {"engine": "fake", "language": language,
                     "sample_rates": list(sample_rates)},
        "languages": {lang: {"voices": {"fake": "fake"}} for lang in sorted(languages)},
        "phrases": texts,
    }
    if fallback is not None:
        spec["fallback"] = {"language": language, "text": fallback}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "voices.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    engine = engine or FakeEngine()
    previous = register("fake", engine)
    try:
        result = build(path)
    finally:
        register("fake", previous)
    if result.failed:  # not expected from the fake engine; never hand back a partial bank
        raise GreetkitError("; ".join(f"{key}: {why}" for key, why in result.failed.items()))
    return result.out
