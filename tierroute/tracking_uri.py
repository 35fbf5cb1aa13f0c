"""Where MLflow runs and registered models live: one rule for every command and the server.

No mlflow import here: the serving runtime reads these to resolve a ``models:/`` URI without
pulling the training stack in until it must download one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["DEFAULT_TRACKING_URI", "registry_uri_for", "resolve_tracking_uri"]

#: the project's store: runs in sqlite, artifacts beside it
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"


def registry_uri_for(tracking_uri: str) -> str:
    """The model registry every tierroute command uses with ``tracking_uri``: the tracking store
    itself (one rule, so train, promote and serve agree). Not $MLFLOW_REGISTRY_URI: mlflow exports
    that variable itself whenever a registry URI is set, so within one process it goes stale."""
    return tracking_uri


def resolve_tracking_uri(given: str | None, environ: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """The store a ``models:/`` or ``runs:/`` URI resolves in: ``given``, else $MLFLOW_TRACKING_URI,
    else the project's default store; a relative sqlite path is pinned to ``cwd`` (default: the
    current folder) so a later ``chdir`` cannot move it."""
    env = os.environ if environ is None else environ
    uri = given or env.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(os.path.join(cwd or os.getcwd(), uri.removeprefix("sqlite:///")))
    return uri
