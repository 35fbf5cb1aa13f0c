"""Shared fixtures. Every test runs in its own temporary working directory, so default output
folders (runs/, mlruns/) land in tmp_path, never in the repository."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def _serving(servers: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run loopback stub servers (``socketserver`` servers with a ``release`` event that slow
    handlers wait on) in threads; on exit, release the slow ones, shut down and join."""
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for s in servers.values()]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.release.set()
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(5)


@pytest.fixture(scope="session")
def serving() -> Callable[[dict[str, Any]], contextlib.AbstractContextManager[dict[str, Any]]]:
    """``with serving({"ok": Stub("ok"), ...}) as stubs:`` runs the stub servers for a block."""
    return _serving
