"""Shared fixtures: a project directory with the shipped voices.yaml, offline engines only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bank import make_store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped voices.yaml + templates/ in a temporary directory."""
    shutil.copy(REPO / "voices.yaml", tmp_path / "voices.yaml")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    return tmp_path


@pytest.fixture
def write_spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a voices.yaml (and optional templates) into tmp_path and return its path."""

    def write(text: str, templates: dict[str, str] | None = None) -> Path:
        (tmp_path / "templates").mkdir(exist_ok=True)
        for name, body in (templates or {}).items():
            (tmp_path / "templates" / name).write_text(body, encoding="utf-8")
        path = tmp_path / "voices.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def _offline_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point edge-tts at a closed local port so tests never touch the internet."""
    monkeypatch.setenv("GREETKIT_EDGE_URL", "wss://127.0.0.1:9/edge?TrustedClientToken=x")


@pytest.fixture(scope="session")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bank of tests/bank.py, built once per session (treat as read-only)."""
    return make_store(tmp_path_factory.mktemp("bank"))


@pytest.fixture
def store(built_store: Path, tmp_path: Path) -> Path:
    """A private copy of the test bank that a test may damage."""
    return Path(shutil.copytree(built_store, tmp_path / "greetings"))
