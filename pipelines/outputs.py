"""Where a job writes: a fresh folder per run, never over anything a user wrote (every command that
writes outputs uses this)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from tierroute.errors import OutputDirError

__all__ = ["prepare_out_dir"]


def prepare_out_dir(out_dir: str | None, kind: str) -> Path:
    """A fresh folder for a run's outputs: ``runs/<kind>-<UTC time>`` by default. An existing folder
    that holds anything is refused, so nothing a user wrote is overwritten."""
    if out_dir is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        path = Path("runs") / f"{kind}-{stamp}"
    else:
        path = Path(out_dir)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputDirError(
            f"Output folder {str(path)!r} already exists and is not empty; tierroute never writes over "
            "existing files. Pass a new --out folder (or leave --out out for a fresh one under runs/)."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path
