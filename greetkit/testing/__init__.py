"""Public test helpers shipped with greetkit (like ``structlog.testing``).

:mod:`greetkit.testing.edge_server` is a local, scriptable server that speaks edge-tts's wire
protocol, so code that uses the ``edge`` engine can be tested offline with the real client.
It needs the ``edge`` extra (aiohttp) and renders its speech with the embedded espeak-ng.
"""

from __future__ import annotations

__all__ = ["EdgeServer", "Step", "serving"]

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy, so importing greetkit.testing does not pull in aiohttp.
    if name in __all__:
        from greetkit.testing import edge_server

        return getattr(edge_server, name)
    raise AttributeError(name)
