"""Options several CLI command groups share (kept apart so the command modules import no each other)."""

from __future__ import annotations

import argparse

__all__ = ["add_engine_options"]


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--engine`` / ``--scheduler`` (train, retrain)."""
    p.add_argument("--engine", default="local", choices=["local", "dask"],
                   help="where ingestion, features and LightGBM run (dask: on the cluster at --scheduler)")
    p.add_argument("--scheduler", default="local", metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 ('local': a LocalCluster here; default)")
