"""Greeting-time metrics through the OpenTelemetry API.

A no-op until the application (or LiveKit Cloud) installs a ``MeterProvider``; the API
package is a dependency of livekit-agents, and without it every function here does nothing.
Instruments (meter ``greetkit``):

* ``greetkit.say.first_frame`` (histogram, seconds): ``say`` called → first audio frame
  handed to the framework, by ``source`` (``clip``/``live``), ``framework`` and
  ``bank_version``; buckets fine between 1 and 50 ms.
* ``greetkit.say.playout`` (histogram, seconds): ``say`` → playout started, where the
  framework reports it (LiveKit: ``ChatMessage.metrics["started_speaking_at"]``).
* ``greetkit.say.live_fallbacks`` (counter): greetings spoken live, by ``reason``.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

__all__ = ["BUCKETS", "record_first_frame", "record_live_fallback", "record_playout"]

log = logging.getLogger("greetkit")

#: Histogram bucket bounds in seconds: 1 ms steps to 10 ms, 5 ms steps to 50 ms, then coarse.
BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.015, 0.020,
    0.025, 0.030, 0.035, 0.040, 0.045, 0.050, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_instruments: tuple[Any, Any, Any] | None = None
_failed = False


def _get() -> tuple[Any, Any, Any] | None:
    """The three instruments, created on first use from the global meter provider (so a
    provider installed after import is used), or None without the API."""
    global _instruments, _failed
    if _instruments is not None or _failed:
        return _instruments
    try:
        from opentelemetry import metrics as otel
    except ImportError:
        _failed = True
        return None
    meter = otel.get_meter("greetkit")
    advisory: dict[str, Any] = {}
    if "explicit_bucket_boundaries_advisory" in inspect.signature(
            meter.create_histogram).parameters:
        advisory["explicit_bucket_boundaries_advisory"] = list(BUCKETS)
    _instruments = (
        meter.create_histogram("greetkit.say.first_frame", unit="s",
                               description="say() to first audio frame", **advisory),
        meter.create_histogram("greetkit.say.playout", unit="s",
                               description="say() to playout started (framework-reported)",
                               **advisory),
        meter.create_counter("greetkit.say.live_fallbacks", unit="1",
                             description="greetings spoken with live TTS, by reason"),
    )
    return _instruments


def _attrs(framework: str, bank_version: int | None, **more: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"framework": framework, **more}
    if bank_version is not None:
        attrs["bank_version"] = bank_version
    return attrs


def record_first_frame(seconds: float, *, framework: str, source: str,
                       bank_version: int | None) -> None:
    """Record say → first frame (``source``: ``clip`` or ``live``). Never raises."""
    try:
        inst = _get()
        if inst is not None:
            inst[0].record(seconds, _attrs(framework, bank_version, source=source))
    except Exception as exc:  # metrics never break a greeting
        log.debug("metric skipped: %r", exc)


def record_playout(seconds: float, *, framework: str, source: str,
                   bank_version: int | None) -> None:
    """Record say → playout started, as reported by the framework. Never raises."""
    try:
        inst = _get()
        if inst is not None:
            inst[1].record(seconds, _attrs(framework, bank_version, source=source))
    except Exception as exc:
        log.debug("metric skipped: %r", exc)


#: The values :func:`fallback_reason` gives: a label set small enough for a metric attribute.
FALLBACK_REASONS = ("disabled", "bad_checksum", "no_clip", "no_bank", "play_failed",
                    "unavailable")


def fallback_reason(via: str, reason: str | None) -> str:
    """The low-cardinality label (one of :data:`FALLBACK_REASONS`) for why a greeting is
    spoken live, from a :class:`~greetkit.Selection`'s ``via`` and ``reason``. Every
    integration labels the live-fallback counter with it, never with the free-text reason.

    >>> fallback_reason("exact", "en_default.wav: checksum mismatch (corrupted); ...")
    'bad_checksum'
    """
    if via == "disabled":
        return "disabled"
    text = (reason or "").lower()
    if "checksum" in text:
        return "bad_checksum"
    if "no clip built" in text or "not loaded" in text:
        return "no_clip"
    if "manifest" in text or "no such" in text:
        return "no_bank"
    if "playing clip" in text:
        return "play_failed"
    return "unavailable" if reason else "no_clip"


def record_live_fallback(reason: str, *, framework: str, bank_version: int | None) -> None:
    """Count one greeting spoken live, by low-cardinality ``reason``. Never raises."""
    try:
        inst = _get()
        if inst is not None:
            inst[2].add(1, _attrs(framework, bank_version, reason=reason))
    except Exception as exc:
        log.debug("metric skipped: %r", exc)
