"""LiveKit plugin: ``python -m livekit.agents download-files`` pulls the greeting bank.

Every agent image already runs that step; it imports each package under the
``livekit.plugins`` namespace and calls every registered plugin's ``download_files()``.
This one pulls the bank published at ``GREETKIT_SOURCE`` (pinned by
``GREETKIT_BANK_VERSION``, else the current version) into ``GREETKIT_BANK`` (default
``greetings``) with :func:`greetkit.remote.pull_from_environment`. With
``GREETKIT_SOURCE`` unset it does nothing. A failed pull logs one line and returns: the
step goes on, and an agent without its bank speaks greetings with live TTS.

Shipped in greetkit's own wheel (``pip install 'greetkit[livekit,fleet]'``).
"""

from __future__ import annotations

import logging
import os

from livekit.agents import Plugin

from greetkit import __version__
from greetkit.remote import BANK_ENV, SOURCE_ENV, pull_from_environment

__all__ = ["GreetkitPlugin"]

logger = logging.getLogger("livekit.plugins.greetkit")


class GreetkitPlugin(Plugin):
    """Registers greetkit's bank pull with LiveKit's ``download-files`` step."""

    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or __name__, logger)

    def download_files(self) -> None:
        """Pull the configured bank; never raises (a failure is one logged line)."""
        try:
            result = pull_from_environment()
        except Exception as exc:  # any failure: one line, and download-files carries on
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            logger.error("greetkit: bank pull failed, greetings will use live TTS: %s", text)
            return
        if result is None:
            logger.info("greetkit: %s is not set; no bank to pull", SOURCE_ENV)
        elif not result.changed:
            logger.info("greetkit: %s already at version %d", result.url, result.version)
        else:
            logger.info("greetkit: pulled %s version %d into %s (%d of %d clip files, "
                        "%.1f MB)", result.url, result.version, _bank_dir(),
                        len(result.transferred), result.clips, result.bytes / 1e6)


def _bank_dir() -> str:
    return os.environ.get(BANK_ENV, "").strip() or "greetings"


Plugin.register_plugin(GreetkitPlugin())
