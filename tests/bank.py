"""The test bank shared by the loader and agents tests: a real build of a small voices.yaml.

Built with the real pipeline (espeak-ng, the DSP chain, greetkit.store), with a 24 kHz
variant per clip and one phrase whose clip is deliberately missing (text only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greetkit.store import Store

#: (key, phrase, language, espeak voice, text) of BUILD_SPEC: short, so the build is fast.
CLIPS = [
    ("en_default", "default", "en", "en-us", "Hi! I'm Xiaozhi!"),
    ("zh_default", "default", "zh", "cmn", "你好！我是小智！"),
    ("en_bye", "bye", "en", "en-us", "Goodbye for now."),
    ("fallback", "fallback", "en", "en-us", "Hello! Give me just a moment."),
]
#: A phrase whose clip was not built: its text is in the manifest (live TTS speaks it).
UNBUILT = {"thanks": {"en": "Thank you for calling."}}
RATES = (48000, 24000)


BUILD_SPEC = """\
version: 1
defaults:
  engine: espeak
  language: en
  sample_rates: [48000, 24000]
languages:
  en: {voices: {espeak: en-us}}
  zh: {voices: {espeak: cmn}}
phrases:
  default:
    en: "Hi! I'm Xiaozhi!"
    zh: "你好！我是小智！"
  bye:
    en: "Goodbye for now."
fallback:
  language: en
  text: "Hello! Give me just a moment."
"""


def make_store(root: Path) -> Path:
    """Build the test bank with the real pipeline (espeak-ng, DSP chain, store) into
    ``root/greetings`` and return the store directory."""
    from greetkit.build import build

    out = root / "greetings"
    (root / "voices.yaml").write_text(BUILD_SPEC, encoding="utf-8")
    result = build(root / "voices.yaml", out)
    assert not result.failed, result.failed
    # voices.yaml cannot declare a phrase without building it; a build whose clip failed
    # leaves exactly this: the phrase's text in `texts`, no clip.
    data = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    data["texts"].update(UNBUILT)
    (out / "manifest.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def edit_manifest(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite ``root/manifest.json`` through ``change`` (a damaged or hand-made bank)."""
    path = root / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def clip_entry(data: dict[str, Any], key: str) -> dict[str, Any]:
    return next(c for c in data["clips"] if c["key"] == key)


def clip_file(data: dict[str, Any], key: str, rate: int = 48000) -> dict[str, Any]:
    """The manifest JSON object of clip ``key``'s file at ``rate`` (format 2's ``files``)."""
    return clip_entry(data, key)["files"][str(rate)]  # type: ignore[no-any-return]


def as_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """A format-2 manifest's JSON rewritten the way format 1 laid it out (the 48 kHz file's
    fields inline in the clip, the other rates in ``variants``). Changes ``data``."""
    for clip in data["clips"]:
        files = clip.pop("files")
        clip.update(files.pop("48000"), sample_rate=48000)
        clip["variants"] = [{"sample_rate": int(rate), **f} for rate, f in files.items()]
    return {**data, "format": 1}


def variant_file(data: dict[str, Any], key: str) -> dict[str, Any]:
    """The object of clip ``key``'s first file at a rate other than 48 kHz."""
    files = clip_entry(data, key)["files"]
    return next(f for rate, f in files.items() if rate != "48000")  # type: ignore[no-any-return]




#: A two-phrase espeak spec whose default greeting is ``{text}`` (for publish/pull tests that
#: need a second, different version of the same bank).
GREETING_SPEC = """\
version: 1
defaults: {{engine: espeak, language: en, sample_rates: [48000, 24000]}}
languages:
  en: {{voices: {{espeak: en-us}}}}
phrases:
  default:
    en: "{text}"
  bye:
    en: "Goodbye for now."
"""


def build_greeting(config: Path, text: str) -> Path:
    """Write GREETING_SPEC with ``text`` to ``config`` and build it; returns the store dir."""
    from greetkit.build import build

    config.write_text(GREETING_SPEC.format(text=text), encoding="utf-8")
    result = build(config)
    assert not result.failed, result.failed
    return config.parent / "greetings"


def clip_files(store: Store) -> dict[str, bytes]:
    """Every clip file of ``store``, name -> bytes (to compare two banks byte for byte)."""
    return {p.name: p.read_bytes() for p in sorted(store.clips.iterdir())}


def greeting_text(store: Store) -> str:
    """The text of the ``default`` phrase in ``store``'s manifest."""
    m = store.manifest()
    assert m is not None
    return next(c.text for c in m.clips if c.phrase == "default")


def flip_byte(path: Path, offset: int = -10) -> None:
    """Corrupt ``path`` in place without changing its size: one PCM byte inverted, so the
    header and size checks pass and only the checksum can tell."""
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
