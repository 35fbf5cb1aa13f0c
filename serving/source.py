"""Where a bundle comes from: a folder as it is, or an MLflow ``models:/`` / ``runs:/`` URI
downloaded to a temporary folder. The download runs in a child process: mlflow (hundreds of MB
once imported) never enters the serving process, and a reload cannot leave its state behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tierroute.errors import BundleError
from tierroute.tracking_uri import registry_uri_for, resolve_tracking_uri

__all__ = ["resolve_source"]


def resolve_source(source: str | os.PathLike[str], tracking_uri: str | None) -> tuple[str, str | None]:
    """(a local bundle folder for ``source``, the temporary download to delete once loaded or
    None); an MLflow ``models:/`` or ``runs:/`` URI is downloaded by a child process."""
    text = os.fspath(source)
    if not (text.startswith("models:/") or text.startswith("runs:/")):
        return text, None
    # the URI given, else $MLFLOW_TRACKING_URI, else the project's store; never a new empty store
    # (mlflow would create ./mlruns/mlflow.db in the server's folder on a mistyped path)
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not os.path.isfile(uri.removeprefix("sqlite:///")):
        raise BundleError(
            "no_bundle",
            f"{text!r} names an MLflow model, but the tracking store {uri!r} does not exist. "
            "Pass --tracking-uri (or set MLFLOW_TRACKING_URI) to the store `tierroute train` logged to.",
        )
    download = tempfile.mkdtemp(prefix="tierroute-bundle-")
    try:
        local = Path(_download(text, uri, download))
    except BundleError:
        shutil.rmtree(download, ignore_errors=True)
        raise
    found = sorted(local.rglob("manifest.json"), key=lambda p: len(p.parts))
    for manifest in found:
        if '"tierroute.router_bundle"' in manifest.read_text(encoding="utf-8", errors="replace"):
            return str(manifest.parent), download
    shutil.rmtree(download, ignore_errors=True)
    raise BundleError(
        "no_bundle",
        f"{text!r} resolved to {str(local)!r}, which holds no router bundle. Log the model "
        "with `tierroute train` (it logs the bundle) or pass a bundle folder.",
    )


#: run by the child: download one artifact URI, print the local path as JSON (or the error)
_CHILD = """
import json, os, sys
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
try:
    import mlflow
except ImportError:
    print(json.dumps({"missing": True})); sys.exit(0)
text, uri, registry, dst = sys.argv[1:5]
mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(registry)
try:
    print(json.dumps({"path": mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=dst)}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc)[:200]}))
"""


def _download(text: str, uri: str, download: str, timeout_s: float = 300.0) -> str:
    """The local path of ``text`` downloaded from the store at ``uri`` into ``download``, by a
    child Python process; BundleError saying why when it cannot be had."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, text, uri, registry_uri_for(uri), download],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise BundleError(
            "no_bundle",
            f"Downloading {text!r} from MLflow failed ({type(exc).__name__}: {str(exc)[:200]}). "
            "Check the tracking URI, or pass a bundle folder.",
        ) from None
    if answer.get("missing"):
        raise BundleError(
            "no_bundle", f"{text!r} is an MLflow URI but mlflow is not installed. Install 'tierroute[train]', or pass a bundle folder."
        )
    if "path" not in answer:
        detail = answer.get("error") or (done.stderr.strip().splitlines() or ["no answer"])[-1][:200]
        raise BundleError(
            "no_bundle", f"MLflow could not resolve {text!r} ({detail}). Check the model name, alias or version, and the tracking URI."
        )
    return str(answer["path"])
