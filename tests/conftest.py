"""Shared fixtures. Every test runs in its own temporary working directory, so default output
folders (runs/, mlruns/) land in tmp_path, never in the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SHARED_DATA = "TIERROUTE_REQUIRE_SHARED_DATA"
SHARED_DATA = "TIERROUTE_SHARED_DATA"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _quiet_datasets() -> None:
    try:
        import datasets
    except ImportError:
        return
    datasets.disable_progress_bars()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (or $TIERROUTE_SHARED_DATA). Skips when absent,
    unless $TIERROUTE_REQUIRE_SHARED_DATA=1 (set by .ci/run), where absence is a failure."""
    path = Path(os.environ.get(SHARED_DATA) or REPO_ROOT.parent / "shared" / "data")
    if not (path / "routerbench").is_dir():
        message = f"../shared/data not found (looked in {path}); set {SHARED_DATA} to its location"
        if os.environ.get(REQUIRE_SHARED_DATA) == "1":
            pytest.fail(message + f"; {REQUIRE_SHARED_DATA}=1 makes this a failure")
        pytest.skip(message)
    return path
