"""espeak-ng through the ``espeakng-loader`` wheel: offline, pip-only, the draft engine.

The wheel ships ``libespeak-ng`` and its data (Mandarin ``cmn`` included), so a fresh machine
with no internet and no system packages can still render every clip.

The library keeps global state in C statics that survive ``espeak_Terminate`` (the wave
generator's phase and pitch-flutter position among them): the same text rendered twice in one
process gave different samples and lengths. So every render loads the library afresh
(``dlopen``), initializes it, synthesizes, terminates and unloads it (``dlclose``): a render
depends only on its inputs, never on what was rendered before it (about 20 ms per clip).
Renders are serialized with a lock and run in a worker thread.
"""

from __future__ import annotations

import _ctypes
import asyncio
import ctypes
import logging
import os
import re
import threading
from collections.abc import Mapping
from functools import cache
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from greetkit.engines.base import RenderedAudio, RenderRequest, VoiceInfo, VoiceList
from greetkit.errors import EngineError, EngineUnavailable
from greetkit.suggest import did_you_mean

# espeak_AUDIO_OUTPUT and flag values from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _VOLUME, _PITCH = 1, 2, 3
_DEFAULT_WPM = 175
_DEFAULT_PITCH = 50

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        # A raw pointer: c_char_p would stop at the first NUL of this multi-string field.
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_log = logging.getLogger("greetkit")


class _Library:
    """One load of ``libespeak-ng``: opened and initialized on entry, terminated and unloaded
    on exit, so the next load starts from the library's pristine static state."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise EngineUnavailable(
                "espeak needs the 'espeakng-loader' package", engine="espeak", retryable=False
            ) from exc
        self.path = espeakng_loader.get_library_path()
        self.data = espeakng_loader.get_data_path().encode()
        self.chunks: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self.sample_rate = 0
        self.lib: Any = None
        self._callback = _SYNTH_CALLBACK(self._collect)

    def __enter__(self) -> _Library:
        lib = ctypes.CDLL(self.path)
        lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = int(
            lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, ctypes.c_char_p(self.data), 0)
        )
        if self.sample_rate <= 0:
            _ctypes.dlclose(lib._handle)
            raise EngineUnavailable(
                f"libespeak-ng failed to initialize with data at {self.data.decode()}",
                engine="espeak",
                retryable=False,
            )
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        return self

    def __exit__(self, *exc: object) -> None:
        lib, self.lib = self.lib, None
        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)
        _check_unloaded(self.path)

    def _collect(self, wav: Any, numsamples: int, events: Any) -> int:
        if numsamples > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def info(self) -> str:
        return str((self.lib.espeak_Info(None) or b"unknown").decode())

    def voices(self) -> dict[str, list[str]]:
        """identifier -> languages, from the data shipped in the wheel."""
        out: dict[str, list[str]] = {}
        arr = self.lib.espeak_ListVoices(None)
        i = 0
        while arr[i]:
            v = arr[i].contents
            out[(v.identifier or b"").decode()] = _languages(v.languages)
            i += 1
        return out

    def synth(self, text: str, voice: str, wpm: int, pitch: int, volume: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EngineError(
                f"espeak has no voice {voice!r}", engine="espeak", retryable=False
            )
        self.lib.espeak_SetParameter(_RATE, wpm, 0)
        self.lib.espeak_SetParameter(_PITCH, pitch, 0)
        self.lib.espeak_SetParameter(_VOLUME, volume, 0)
        self.chunks = []
        data = text.encode("utf-8") + b"\0"
        rc = self.lib.espeak_Synth(
            ctypes.c_char_p(data), len(data), 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        self.lib.espeak_Synchronize()
        if rc != 0:
            raise EngineError(f"espeak_Synth failed with code {rc}", engine="espeak")
        if not self.chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.chunks)


_warned_shared = False


def _check_unloaded(path: str) -> None:
    """Warn once when something else in the process keeps libespeak-ng loaded: its state then
    survives our unload and renders may depend on what was rendered before."""
    global _warned_shared
    mode = getattr(os, "RTLD_NOLOAD", None)
    if mode is None or _warned_shared:
        return
    try:
        still = ctypes.CDLL(path, mode=mode)
    except OSError:
        return  # unloaded: the next render starts from pristine state
    _ctypes.dlclose(still._handle)
    _warned_shared = True
    _log.warning("libespeak-ng stays loaded by another component of this process; espeak "
                 "renders may not be byte-reproducible")


def _languages(pointer: int | None) -> list[str]:
    """Decode espeak_VOICE.languages: (priority byte, NUL-terminated name) pairs ended by a
    zero priority byte. Read entry by entry: a fixed-size read can run past the allocation."""
    langs: list[str] = []
    if not pointer:
        return langs
    pos = pointer
    while ctypes.c_ubyte.from_address(pos).value != 0:
        name = ctypes.string_at(pos + 1)  # stops at the name's NUL
        langs.append(name.decode(errors="replace"))
        pos += 1 + len(name) + 1
    return langs


_lock = threading.Lock()


@cache
def _facts() -> tuple[str, dict[str, list[str]]]:
    """(espeak-ng version, voices), read once from one load of the library."""
    with _lock, _Library() as lib:
        return lib.info(), lib.voices()


_PERCENT = re.compile(r"^([+-]?\d+(?:\.\d+)?)%$")
_HZ = re.compile(r"^([+-]?\d+(?:\.\d+)?)Hz$")


def espeak_parameters(options: Mapping[str, Any]) -> tuple[int, int, int]:
    """Map voices.yaml's edge-style ``rate``/``pitch``/``volume`` onto espeak's units.

    ``rate: "+10%"`` scales the default 175 words per minute; ``pitch: "+20Hz"`` moves
    espeak's 0-100 pitch scale by one step per 2 Hz; ``volume: "-10%"`` scales amplitude 100.
    """
    wpm, pitch, volume = _DEFAULT_WPM, _DEFAULT_PITCH, 100
    if m := _PERCENT.match(str(options.get("rate", "+0%"))):
        wpm = round(_DEFAULT_WPM * (1 + float(m.group(1)) / 100))
    if m := _HZ.match(str(options.get("pitch", "+0Hz"))):
        pitch = round(_DEFAULT_PITCH + float(m.group(1)) / 2)
    if m := _PERCENT.match(str(options.get("volume", "+0%"))):
        volume = round(100 * (1 + float(m.group(1)) / 100))
    return max(80, min(wpm, 450)), max(0, min(pitch, 100)), max(0, min(volume, 200))


class EspeakEngine:
    """Offline speech from the embedded espeak-ng."""

    name: ClassVar[str] = "espeak"
    max_concurrency: ClassVar[int] = 1
    offline: ClassVar[bool] = True

    def version(self) -> str:
        return f"espeak-ng {_facts()[0]}; espeakng-loader {dist_version('espeakng-loader')}"

    def check_available(self) -> None:
        _facts()

    def voices(self) -> dict[str, list[str]]:
        """Voice identifiers (e.g. ``gmw/en-US``) and the language codes each speaks."""
        return _facts()[1]

    def voice_list(self, *, project_dir: Path | None = None) -> VoiceList:
        """The voices of the espeak-ng data shipped with greetkit."""
        return VoiceList(("LANGUAGES",), tuple(
            VoiceInfo(ident, tuple(langs), (", ".join(langs),))
            for ident, langs in sorted(self.voices().items())))

    def _voice_names(self) -> set[str]:
        names: set[str] = set()
        for ident, langs in self.voices().items():
            names.add(ident)
            names.add(ident.rsplit("/", 1)[-1])
            names.update(langs)
        return names

    def validate_voice(self, voice: str, language: str, *,
                       project_dir: Path | None = None) -> str | None:
        names = self._voice_names()
        if voice in names:
            return None
        hint = did_you_mean(voice, sorted(names), otherwise="run 'greetkit voices --engine espeak'")
        return f"unknown espeak voice {voice!r}; {hint}"

    def _render_sync(self, request: RenderRequest) -> RenderedAudio:
        wpm, pitch, volume = espeak_parameters(request.options)
        # A fresh load per render: the output depends on this request alone.
        with _lock, _Library() as lib:
            pcm = lib.synth(request.text, request.voice, wpm, pitch, volume)
            rate = lib.sample_rate
        if pcm.size == 0:
            raise EngineError(
                f"espeak produced no audio for {request.key!r}", engine="espeak", retryable=False
            )
        samples = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
        return RenderedAudio(samples, rate, {"wpm": wpm, "pitch": pitch, "volume": volume})

    async def render(self, request: RenderRequest) -> RenderedAudio:
        return await asyncio.to_thread(self._render_sync, request)


#: Where espeak's own ordering picks an unusual variant first (en -> Caribbean English), the
#: voice a listener expects.
_PREFERRED = {"en": "en-us", "zh": "cmn", "zh-cn": "cmn", "zh-tw": "cmn", "zh-hk": "yue"}


def voice_for_language(code: str) -> str | None:
    """The espeak voice that speaks ``code`` (``zh-CN`` -> ``cmn``), or None.

    Used for drafts when voices.yaml names no espeak voice for a language.
    """
    wanted = code.lower().replace("_", "-")
    if wanted in _PREFERRED:
        return _PREFERRED[wanted]
    voices = EspeakEngine().voices()
    for langs in voices.values():
        if langs and langs[0] == wanted:
            return wanted
    base = wanted.split("-")[0]
    if base in _PREFERRED:
        return _PREFERRED[base]
    for langs in voices.values():
        if base in langs:
            return langs[0]
    return None
