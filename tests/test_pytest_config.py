"""The suite's own configuration (pyproject's [tool.pytest.ini_options])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_slow_checks_are_left_out_of_the_default_run() -> None:
    """A test marked ``slow`` is deselected by a plain ``pytest`` and selected by ``-m slow``."""
    def collected(*extra: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
             "tests/test_engines_edge.py", *extra],
            cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    slow = "test_forty_clip_build_never_opens_a_fifth_connection"
    assert slow not in collected()
    assert slow in collected("-m", "slow")
