"""Public test helpers shipped with greetkit (like ``structlog.testing``)."""

from __future__ import annotations

__all__: list[str] = []
