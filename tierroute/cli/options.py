"""What several CLI command groups share: common options, the quieting of chatty libraries, the
progress display and the one meaning of ``--tracking-uri`` (kept apart so the command modules
import none of each other)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from tierroute.errors import ConfigError
from tierroute.pipelines.training.distributed import ENGINES
from tierroute.tracking_uri import DEFAULT_TRACKING_URI

__all__ = ["add_engine_options", "add_tracking_option", "quiet_datasets", "quiet_mlflow", "progress_for", "tracking_store", "bundle_store"]


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--engine`` / ``--scheduler`` (train, retrain)."""
    p.add_argument(
        "--engine",
        default="local",
        choices=ENGINES,
        help="where ingestion, features and LightGBM run (dask: on the cluster at --scheduler)",
    )
    p.add_argument(
        "--scheduler",
        default="local",
        metavar="ADDRESS",
        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 ('local': a LocalCluster here; default)",
    )


def add_tracking_option(p: argparse.ArgumentParser, purpose: str) -> None:
    """``--tracking-uri``, with one meaning everywhere: unset = $MLFLOW_TRACKING_URI or the project's
    store, ``''`` = no MLflow at all (commands that cannot work without a store say so)."""
    p.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help=f"MLflow store {purpose} (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI}; '' = no MLflow)",
    )


def tracking_store(args: argparse.Namespace, needed_for: str | None = None) -> str:
    """The store ``--tracking-uri`` names: the default when unset; ``''`` when the user turned MLflow
    off, which is an error when the command needs a store (``needed_for`` says what for)."""
    import os

    given = args.tracking_uri
    if given is None:
        return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if given == "" and needed_for:
        raise ConfigError(
            f"--tracking-uri '' turns MLflow off, but {needed_for} needs an MLflow store. Drop the option "
            f"to use the default store ({DEFAULT_TRACKING_URI}) or pass the store's URI."
        )
    return str(given)


def bundle_store(args: argparse.Namespace) -> str | None:
    """The MLflow store of a ``models:/`` bundle (an error when ``--tracking-uri ''`` turned MLflow
    off); None for a bundle folder, which needs no store."""
    if args.bundle is None or not str(args.bundle).startswith("models:/"):
        return None
    return tracking_store(args, f"the bundle {args.bundle!r}")


def quiet_datasets() -> None:
    """Silence the datasets library's per-file bars; a clear error when the training extras are absent."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "this command needs the training extras (datasets, pandas), which are not installed. "
            "Install them: pip install 'tierroute[train]' (or pip install -e '.[train]' in a checkout)."
        ) from None

    datasets.disable_progress_bars()  # per-file save bars are noise in a CLI summary


def quiet_mlflow() -> None:
    """MLflow's INFO/WARNING chatter off (it buries the summary); errors still show."""
    logging.getLogger("mlflow").setLevel(logging.ERROR)


def progress_for(args: argparse.Namespace) -> Any:
    """Stage lines and progress bars on stderr; none with --json (stdout is then one object)."""
    from tierroute.progress import Progress

    return Progress(enabled=not getattr(args, "json", False))
