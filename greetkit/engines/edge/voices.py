"""The edge voice catalogue: built-in, cached per project, fetched from the service.

``greetkit voices --engine edge --refresh`` writes the service's list to
``.greetkit/edge-voices.json`` beside voices.yaml; validation then checks voices against it
(else against a short built-in list) and suggests the closest name.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greetkit.engines.base import VoiceInfo, VoiceList
from greetkit.errors import EngineError
from greetkit.suggest import suggest

from .classify import describe
from .client import ENGINE, configure_client, edge_tts_version, voices_url

#: Where ``greetkit voices --engine edge --refresh`` caches the service's voice list,
#: relative to the directory of voices.yaml.
VOICE_CACHE = Path(".greetkit") / "edge-voices.json"

#: Well-known neural voices (short name, locale, gender): the fallback when no list is cached.
KNOWN_VOICES: tuple[tuple[str, str, str], ...] = (
    ("en-US-AvaNeural", "en-US", "Female"),
    ("en-US-AndrewNeural", "en-US", "Male"),
    ("en-US-EmmaNeural", "en-US", "Female"),
    ("en-US-BrianNeural", "en-US", "Male"),
    ("en-US-JennyNeural", "en-US", "Female"),
    ("en-US-GuyNeural", "en-US", "Male"),
    ("en-US-AriaNeural", "en-US", "Female"),
    ("en-US-AvaMultilingualNeural", "en-US", "Female"),
    ("en-US-EmmaMultilingualNeural", "en-US", "Female"),
    ("en-GB-SoniaNeural", "en-GB", "Female"),
    ("en-GB-RyanNeural", "en-GB", "Male"),
    ("en-AU-NatashaNeural", "en-AU", "Female"),
    ("zh-CN-XiaoxiaoNeural", "zh-CN", "Female"),
    ("zh-CN-XiaoyiNeural", "zh-CN", "Female"),
    ("zh-CN-YunxiNeural", "zh-CN", "Male"),
    ("zh-CN-YunyangNeural", "zh-CN", "Male"),
    ("zh-TW-HsiaoChenNeural", "zh-TW", "Female"),
    ("ja-JP-NanamiNeural", "ja-JP", "Female"),
    ("ko-KR-SunHiNeural", "ko-KR", "Female"),
    ("de-DE-KatjaNeural", "de-DE", "Female"),
    ("de-DE-ConradNeural", "de-DE", "Male"),
    ("fr-FR-DeniseNeural", "fr-FR", "Female"),
    ("fr-FR-HenriNeural", "fr-FR", "Male"),
    ("es-ES-ElviraNeural", "es-ES", "Female"),
    ("es-MX-DaliaNeural", "es-MX", "Female"),
    ("it-IT-ElsaNeural", "it-IT", "Female"),
    ("pt-BR-FranciscaNeural", "pt-BR", "Female"),
)


@dataclass(frozen=True)
class EdgeVoice:
    """One voice of the service: its short name, locale and gender."""

    short_name: str
    locale: str
    gender: str = ""

    @property
    def language(self) -> str:
        return self.locale.split("-")[0].lower()


def builtin_voices() -> list[EdgeVoice]:
    """greetkit's small built-in list of well-known neural voices."""
    return [EdgeVoice(n, loc, g) for n, loc, g in KNOWN_VOICES]


def cached_voices(project_dir: Path | None) -> list[EdgeVoice] | None:
    """The voice list cached in ``project_dir`` (None when there is none or it is unreadable)."""
    if project_dir is None:
        return None
    path = project_dir / VOICE_CACHE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [EdgeVoice(str(v["ShortName"]), str(v["Locale"]), str(v.get("Gender", "")))
                for v in data["voices"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def fetch_voices() -> list[dict[str, Any]]:
    """The service's full voice list (raw JSON objects), with greetkit's errors on failure."""
    configure_client()
    import aiohttp
    from edge_tts import list_voices

    try:
        raw = await asyncio.wait_for(list_voices(), timeout=20)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise EngineError(f"cannot fetch the edge voice list from {voices_url().split('?')[0]}: "
                          f"{describe(exc)}", engine=ENGINE, retryable=True) from exc
    return [dict(v) for v in raw]


def refresh_voice_cache(project_dir: Path) -> Path:
    """Fetch the service's voice list and write it to ``project_dir/.greetkit/edge-voices.json``.

    The write is atomic (temp file + ``os.replace``). Returns the cache path.
    """
    voices = asyncio.run(fetch_voices())
    path = project_dir / VOICE_CACHE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    payload = {"fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "source": voices_url().split("?")[0], "edge_tts": edge_tts_version(),
               "voices": voices}
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def voice_list(project_dir: Path | None) -> VoiceList:
    """The project's cached voice list when there is one, else the built-in list."""
    voices = cached_voices(project_dir)
    if voices is not None and project_dir is not None:
        source = f"cached in {project_dir / VOICE_CACHE}"
    else:
        voices = builtin_voices()
        source = "greetkit's built-in list; 'greetkit voices --refresh' fetches the full one"
    return VoiceList(("LOCALE", "GENDER"), tuple(
        VoiceInfo(v.short_name, (v.locale, v.language), (v.locale, v.gender)) for v in voices),
        source)


def voice_problem(voice: str, language: str, project_dir: Path | None = None) -> str | None:
    """Why ``voice`` looks wrong for ``language`` (with a suggestion), or None if it is fine.

    Uses the project's cached voice list when there is one, else the built-in list (then an
    unknown name is only 'not in the built-in list', since that list is short).

    >>> voice_problem("zh-CN-Xiao", "zh")
    "unknown edge voice 'zh-CN-Xiao'; did you mean 'zh-CN-XiaoxiaoNeural'?"
    """
    cached = cached_voices(project_dir)
    voices = cached if cached is not None else builtin_voices()
    by_name = {v.short_name: v for v in voices}
    found = by_name.get(voice)
    if found is None:
        guess = suggest(voice, by_name)
        if guess:
            return f"unknown edge voice {voice!r}; did you mean {guess[0]!r}?"
        if cached is not None:
            return (f"unknown edge voice {voice!r}; see 'greetkit voices --engine edge "
                    f"--language {language}'")
        return (f"edge voice {voice!r} is not in greetkit's built-in list; run 'greetkit voices "
                "--engine edge --refresh' where the service is reachable to check it")
    wanted = language.replace("_", "-").split("-")[0].lower()
    if found.language != wanted and "Multilingual" not in voice:
        return (f"edge voice {voice!r} speaks {found.locale}, not {language!r}; pick a "
                f"{language} voice ('greetkit voices --engine edge --language {language}')")
    return None
