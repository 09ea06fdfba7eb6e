"""The one "did you mean" policy: which known names a mistyped one probably meant.

Every message that refuses an unknown name (a spec key, an engine, a voice, a plugin option,
a clip key) suggests through :func:`suggest`, so a typo gets the same help everywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["CUTOFF", "did_you_mean", "suggest"]

#: The lowest :class:`difflib.SequenceMatcher` ratio a spelling suggestion needs: at 0.5 two
#: long names sharing a suffix ('zh-CN-XiaoxiaoNeural', 'en-US-AvaNeural') or two unrelated
#: language codes ('de', 'en') would pass as typos of each other.
CUTOFF = 0.6


def suggest(word: str, choices: Iterable[str], *, n: int = 1) -> list[str]:
    """Up to ``n`` of ``choices`` that ``word`` probably meant, best first.

    Case is ignored throughout. In order: the same name in another case; names ``word`` is
    the beginning of (alphabetically, so a truncated name gets completed); names containing
    ``word``; then the closest spellings (difflib ratio at least :data:`CUTOFF`).

    >>> suggest("zh-CN-Xiao", ["en-US-AvaNeural", "zh-CN-XiaoxiaoNeural"])
    ['zh-CN-XiaoxiaoNeural']
    >>> suggest("zh_defualt", ["en_default", "zh_default", "fallback"], n=3)
    ['zh_default', 'en_default']
    >>> suggest("xyz", ["en", "zh"])
    []
    """
    folded: dict[str, list[str]] = {}
    for choice in choices:
        folded.setdefault(choice.casefold(), []).append(choice)
    w = word.casefold()
    found: list[str] = []
    if w:
        if w in folded:
            found.append(w)
        found += sorted(f for f in folded if f.startswith(w))
        found += sorted(f for f in folded if w in f)
    found += difflib.get_close_matches(w, list(folded), n=n, cutoff=CUTOFF)
    best = list(dict.fromkeys(found))[:n]  # first occurrence wins, order kept
    return [_spelled(word, folded[f]) for f in best]


def _spelled(word: str, originals: list[str]) -> str:
    """Of names equal but for case ('en-us', 'en-US'), the one spelled most like ``word``."""
    if len(originals) == 1:
        return originals[0]
    return max(originals, key=lambda o: difflib.SequenceMatcher(None, word, o).ratio())


def did_you_mean(word: str, choices: Iterable[str], *, otherwise: str | None = None) -> str:
    """The hint for a message refusing ``word``: ``did you mean 'x'?`` when :func:`suggest`
    finds a name, else ``otherwise`` (default: ``choose one of 'a', 'b'``, or
    ``declare it first`` when there are no choices at all).

    >>> did_you_mean("edgy", ["espeak", "edge"])
    "did you mean 'edge'?"
    >>> did_you_mean("loud", ["speech", "podcast"])
    "choose one of 'speech', 'podcast'"
    """
    choices = list(choices)
    close = suggest(word, choices)
    if close:
        return f"did you mean {close[0]!r}?"
    if otherwise is not None:
        return otherwise
    listed = ", ".join(repr(c) for c in choices)
    return f"choose one of {listed}" if listed else "declare it first"
