"""Shared fixtures: the real trace samples in ../shared/traces and a fresh store per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from servetrace.loaders import Store

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared/traces``; its absence is an error, never a skip."""
    if not (SHARED / "README.md").exists():
        pytest.fail(f"real trace samples not found at {SHARED}: put ../shared beside the repo")
    return SHARED


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def mirror(shared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads served from ../shared/traces, as in CI."""
    monkeypatch.setenv("SERVETRACE_MIRROR", str(shared))
    return shared


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
