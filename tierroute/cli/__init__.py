"""The ``tierroute`` command line. Argument parsing lives in the CLI modules only; every command
builds a frozen config and calls a job. A TierrouteError becomes one line on stderr and exit 1.

    tierroute ingest PATH... [--format auto|routerbench|routellm|outcomes] [--out DIR] [--json]
    tierroute audit PATH... [--catalogue FILE] [--json]
    tierroute train [--data PATH...] [--format ...] [--catalogue FILE] [--kind auto|KIND] [--encoder auto|static|tuned|minilm|none]
                    [--eval-data PATH...] [--engine local|dask --scheduler ADDRESS] [--out DIR] [--json]
    tierroute evaluate --model RUN_ID|DIR --data PATH... [--out DIR] [--json]
    tierroute export RUN_ID|DIR|models:/URI --out DIR [--json]
    tierroute route (--prompt TEXT | --input REQUESTS.jsonl) [--bundle DIR|models:/URI] [--schema JSON]
                    [--sla MS] [--json]
    tierroute serve (--bundle DIR|models:/URI | --proxy CATALOGUE) [--host H] [--port P] ...
    tierroute promote --version N --data PATH... [--json]      (exit 3: refused, the champion stays)
    tierroute rollback [--json]
    tierroute retrain --logs NEW... [--previous PATH...] [--window-days N] [--json]   (exit 3: refused)
    tierroute drift --bundle DIR --log FILE... [--fail-on-drift] [--json]             (exit 4: drift)
    tierroute benchmark --prompts FILE --catalogue FILE --out OUTCOMES.jsonl [--budget USD] [--json]

One module per command group: :mod:`tierroute.cli.data` (ingest, audit), :mod:`tierroute.cli.training`
(train, evaluate), :mod:`tierroute.cli.serving` (export, route, serve, conformance),
:mod:`tierroute.cli.lifecycle` (retrain, promote, rollback, drift) and :mod:`tierroute.cli.benchmark`;
this module builds the parser and runs a command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from tierroute import __version__
from tierroute.errors import TierrouteError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierroute", description="Route each LLM request to the cheapest tier likely to answer it correctly."
    )
    parser.add_argument("--version", action="version", version=f"tierroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from tierroute.cli.benchmark import add_benchmark_command
    from tierroute.cli.data import add_data_commands
    from tierroute.cli.lifecycle import add_lifecycle_commands
    from tierroute.cli.serving import add_serving_commands
    from tierroute.cli.training import add_training_commands

    add_data_commands(sub)
    add_training_commands(sub)
    add_serving_commands(sub)
    add_lifecycle_commands(sub)
    add_benchmark_command(sub)
    return parser


#: commands that may call MLflow (train/retrain log and register, the others read runs and the registry)
_MLFLOW_COMMANDS = frozenset({"train", "retrain", "promote", "rollback", "evaluate", "export"})


def _quiet_mlflow_for(args: argparse.Namespace) -> Any:
    """MLflow's INFO lines, warnings, download bars and notices kept off stderr for ``--json`` runs
    (and export, whose output is one line); errors still show. Commands that never touch MLflow
    skip even the import of the helper."""
    import contextlib

    if args.command not in _MLFLOW_COMMANDS or not (getattr(args, "json", False) or args.command == "export"):
        return contextlib.nullcontext()
    from tierroute.pipelines.training.tracking import quiet_mlflow

    return quiet_mlflow()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 error, 2 some requests were malformed, 3 promotion
    refused, 4 drift flagged with --fail-on-drift, 5 a conformance mismatch)."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    from tierroute.cli.benchmark import BENCHMARK_COMMANDS
    from tierroute.cli.data import DATA_COMMANDS
    from tierroute.cli.lifecycle import LIFECYCLE_COMMANDS
    from tierroute.cli.serving import SERVING_COMMANDS
    from tierroute.cli.training import TRAINING_COMMANDS

    commands = {**DATA_COMMANDS, **TRAINING_COMMANDS, **SERVING_COMMANDS, **LIFECYCLE_COMMANDS, **BENCHMARK_COMMANDS}
    try:
        with _quiet_mlflow_for(args):
            return commands[args.command](args, stream)
    except TierrouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
