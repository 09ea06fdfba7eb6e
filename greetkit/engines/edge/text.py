"""What text the service can take: speakable text, cut into requests under its byte limit."""

from __future__ import annotations

import re
import unicodedata
from xml.sax.saxutils import escape

from greetkit.errors import EngineError

from .client import ENGINE

#: The service's limit on one request's text, in bytes of escaped UTF-8.
MAX_REQUEST_BYTES = 4096

_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=[.…])(?=\s)|(?<=\n)")
_CLAUSE_END = re.compile(r"(?<=[，、,：:])")
_SPACE = re.compile(r"(?<=\s)")


def is_speakable(text: str) -> bool:
    """True when ``text`` has a letter or digit; the service returns no audio for the rest."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def _size(s: str) -> int:
    return len(escape(s).encode("utf-8"))


def _atoms(s: str, limit: int, level: int = 0) -> list[str]:
    """``s`` cut at the coarsest boundaries (sentence, clause, space) that fit ``limit``."""
    if _size(s) <= limit:
        return [s]
    splitters = (_SENTENCE_END, _CLAUSE_END, _SPACE)
    if level < len(splitters):
        parts = [p for p in splitters[level].split(s) if p]
        if len(parts) > 1:
            return [a for p in parts for a in _atoms(p, limit, level + 1)]
        return _atoms(s, limit, level + 1)
    out, cur = [], ""
    for ch in s:  # no boundary left: cut between characters (never inside one)
        if cur and _size(cur + ch) > limit:
            out.append(cur)
            cur = ""
        cur += ch
    return [*out, cur] if cur else out


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces whose XML-escaped UTF-8 is at most ``limit`` bytes.

    Cuts at sentence ends (``。！？；`` and ``.!?;``) first, then clauses (``，、,:``), then
    whitespace, and only as a last resort between characters; pieces are packed greedily so a
    short text stays one request. Pieces without letters or digits are dropped (the service
    returns no audio for them).

    >>> split_text("你好！我是小智！", 4000)
    ['你好！我是小智！']
    """
    pieces: list[str] = []
    for atom in _atoms(text, limit):
        if pieces and _size(pieces[-1] + atom) <= limit:
            pieces[-1] += atom
        else:
            pieces.append(atom)
    return [p.strip() for p in pieces if is_speakable(p)]


def text_budget(voice: str, rate: str, pitch: str, volume: str) -> int:
    """Bytes of escaped text that keep the whole SSML document within the service's limit.

    Also where a voice or prosody value the client cannot express is found, before any
    request (a non-retryable :class:`EngineError`).
    """
    from edge_tts.communicate import mkssml
    from edge_tts.data_classes import TTSConfig

    try:
        config = TTSConfig(voice, rate, volume, pitch, "SentenceBoundary")
    except (TypeError, ValueError) as exc:
        raise EngineError(f"edge cannot use voice/options {voice!r} rate={rate!r} "
                          f"pitch={pitch!r} volume={volume!r}: {exc}", engine=ENGINE,
                          retryable=False) from exc
    return MAX_REQUEST_BYTES - len(mkssml(config, "").encode("utf-8"))
