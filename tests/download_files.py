"""Run LiveKit's real ``python -m livekit.agents download-files`` step in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def download_files(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The step every agent Dockerfile runs, with ``env`` added to this process's
    environment (GREETKIT_* variables of the caller's own environment removed first)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GREETKIT_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "livekit.agents", "download-files"],
                          cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)
