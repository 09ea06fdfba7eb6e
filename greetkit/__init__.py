"""greetkit: pre-built, loudness-normalized greeting audio for real-time voice agents.

Build a bank with ``greetkit build`` (or :func:`greetkit.build.build`), then in your agent::

    import greetkit

    def prewarm(proc):
        proc.userdata["greetings"] = greetkit.load("greetings")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Bank", "Clip", "Selection", "__version__", "load"]

if TYPE_CHECKING:  # pragma: no cover
    from greetkit.loader import Bank, Clip, Selection


def load(path: Any = "greetings", **kwargs: Any) -> Bank:
    """Load a built greeting bank synchronously (safe in LiveKit's ``prewarm``).

    >>> bank = greetkit.load("greetings")  # doctest: +SKIP
    """
    from greetkit.loader import load as _load

    return _load(path, **kwargs)


def __getattr__(name: str) -> Any:
    """``greetkit.Bank``, ``greetkit.Clip``, ``greetkit.Selection`` without importing the
    loader (and numpy) for commands that never load a bank."""
    if name in ("Bank", "Clip", "Selection"):
        import greetkit.loader

        return getattr(greetkit.loader, name)
    raise AttributeError(f"module 'greetkit' has no attribute {name!r}")
