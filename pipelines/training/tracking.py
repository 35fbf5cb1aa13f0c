"""MLflow tracking for training runs: ``sqlite:///mlruns/mlflow.db`` by default, artifacts beside
it under ``mlruns/artifacts``; every run logs its frozen config, data hashes and row counts,
metrics, plots, feature importance and the model, which is registered as ``tierroute``.

mlflow is imported here only, inside functions (serving never imports it). :func:`quiet_mlflow`
keeps its chatter (INFO lines, warnings, download bars, "Successfully registered model") off stderr
for the runs whose caller asks for it (the CLI's ``--json`` runs); errors still show.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from tierroute.tracking_uri import DEFAULT_TRACKING_URI, registry_uri_for

__all__ = [
    "DEFAULT_TRACKING_URI",
    "REGISTERED_MODEL",
    "registry_uri_for",
    "log_training_run",
    "save_router",
    "load_router",
    "RouterPyfunc",
    "load_router_from",
    "quiet_mlflow",
    "load_mlflow",
]

REGISTERED_MODEL = "tierroute"
EXPERIMENT = "tierroute"


#: what mlflow reads when it is imported / downloads artifacts, set only while a quiet run lasts
_QUIET_ENV = {"MLFLOW_LOGGING_LEVEL": "ERROR", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
_QUIET_LOGGERS = ("mlflow", "alembic")


class _Quiet:
    """What one :func:`quiet_mlflow` block changed, so that its end puts everything back."""

    def __init__(self) -> None:
        self.env = {name: os.environ.get(name) for name in _QUIET_ENV}
        self.levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}

    def start(self) -> None:
        os.environ.update(_QUIET_ENV)  # read by mlflow's import (logger levels) and its artifact downloads
        self.apply()

    def apply(self) -> None:
        """Loggers at ERROR (again: mlflow's import configures them anew)."""
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)

    def stop(self) -> None:
        for name, value in self.env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


_QUIET: ContextVar[_Quiet | None] = ContextVar("tierroute_quiet_mlflow", default=None)


@contextlib.contextmanager
def quiet_mlflow(enabled: bool = True) -> Iterator[None]:
    """While the block runs (and ``enabled``): mlflow's and alembic's loggers at ERROR, its
    registration notices and artifact progress bars off; errors still reach stderr. Everything it
    changed (the environment variables it sets included) is restored at the end. Imports nothing
    heavy.

    >>> with quiet_mlflow(): pass
    """
    if not enabled or _QUIET.get() is not None:
        yield
        return
    quiet = _Quiet()
    token = _QUIET.set(quiet)
    quiet.start()
    try:
        yield
    finally:
        _QUIET.reset(token)
        quiet.stop()


def load_mlflow() -> Any:
    """Import mlflow with its usage telemetry off (tierroute makes no hidden network calls), and
    quiet inside a :func:`quiet_mlflow` block."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    quiet = _QUIET.get()
    if quiet is not None:
        quiet.apply()
    return mlflow


@contextlib.contextmanager
def _notices_off() -> Iterator[None]:
    """Inside a quiet block, what mlflow prints straight to stderr (not through a logger:
    "Successfully registered model ...", "Created version ...") is held back; error lines are
    passed on."""
    if _QUIET.get() is None:
        yield
        return
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    finally:
        errors = [line for line in held.getvalue().splitlines() if " ERROR " in line or " CRITICAL " in line]
        if errors:
            print("\n".join(errors), file=sys.stderr)


def save_router(router: Any, folder: str | Path) -> Path:
    """Pickle a fitted LearnedRouter (without its embedding cache) with a small JSON manifest."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    cache, router.cache = router.cache, None
    try:
        (path / "router.pkl").write_bytes(pickle.dumps(router, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        router.cache = cache
    manifest = {
        "kind": "tierroute.learned_router",
        "version": 1,
        "candidates": list(router.candidates_),
        "policy": router.policy_.to_dict(),
        "config": router.config.to_dict(),
        "feature_spec": router.feature_spec_.to_dict(),
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def load_router(folder: str | Path) -> Any:
    """Read back :func:`save_router`'s folder (only open folders you or your pipeline wrote)."""
    from tierroute.errors import ConfigError

    path = Path(folder)
    if not (path / "router.pkl").is_file():
        raise ConfigError(f"{str(path)!r} holds no trained router (router.pkl). Pass a training run's model folder.")
    return pickle.loads((path / "router.pkl").read_bytes())


def load_router_from(model: str, tracking_uri: str = DEFAULT_TRACKING_URI) -> Any:
    """A trained router from a folder (a train run's folder or its ``model/``) or an MLflow run id."""
    from tierroute.errors import ConfigError

    path = Path(model)
    for folder in (path / "model", path):
        if (folder / "router.pkl").is_file():
            return load_router(folder)
    if path.exists() or len(model) != 32 or not all(c in "0123456789abcdef" for c in model):
        raise ConfigError(
            f"--model {model!r} is neither a folder holding a trained router (router.pkl) nor an MLflow run id. "
            "Pass the folder `tierroute train` printed, or its run id."
        )
    if not tracking_uri:
        raise ConfigError(
            f"--model {model!r} is an MLflow run id, but --tracking-uri '' turns MLflow off. Drop the "
            "option (default store) or pass the store's URI, or pass the run's folder instead."
        )
    mlflow = load_mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri_for(tracking_uri))  # a registry URI set earlier in the process must not win
    try:
        local = mlflow.artifacts.download_artifacts(run_id=model, artifact_path="router")
    except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for an unknown run
        raise ConfigError(
            f"MLflow run {model!r} has no router artifact at {tracking_uri} ({type(exc).__name__}). Check the run id and --tracking-uri."
        ) from None
    return load_router(local)


def _pyfunc_base() -> type:
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class RouterPyfunc:
    """MLflow pyfunc wrapper: a DataFrame of requests in, chosen model per request out. It serves
    the logged RouterBundle with the serving runtime (the same decisions as ``Router.route``);
    models logged before bundles existed fall back to the pickled router."""

    def load_context(self, context: Any) -> None:
        if "bundle" in context.artifacts:
            from tierroute.serving.router import Router

            self.router = Router.load(context.artifacts["bundle"], strict=True)
        else:
            self.router = load_router(context.artifacts["router"])

    def predict(self, context, model_input, params=None):  # no hints: MLflow reads hints as a signature
        from tierroute.request import parse_request

        requests = [parse_request({k: v for k, v in row.items() if v == v}) for row in model_input.to_dict(orient="records")]
        if hasattr(self.router, "route_batch"):
            return [d.model for d in self.router.route_batch(requests)]
        picks = self.router.decide(requests)
        return [self.router.candidates_[j] for j in picks]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else value


def _log_selection(mlflow: Any, selection: Mapping[str, Any]) -> None:
    """One nested run per family of the selection table, under the active (training) run."""
    mlflow.log_params({"selection.chosen": selection["chosen"], "selection.mode": str(selection["mode"])[:500]})
    mlflow.log_dict(dict(selection), "selection.json")
    for row in selection["rows"]:
        with mlflow.start_run(run_name=f"family {row['name']}", nested=True):
            mlflow.log_params({k: str(row[k]) for k in ("name", "kind", "encoder", "dims", "status", "bundleable")})
            mlflow.set_tags({"tierroute.selection": "family", "chosen": str(bool(row["chosen"])).lower()})
            values = {
                "oof_aiq": row["oof_aiq"],
                "oof_aiq_low": row["oof_aiq_low"],
                "oof_aiq_high": row["oof_aiq_high"],
                "fit_seconds": row["fit_seconds"],
                "serve_us": row["serve_us"],
                "chosen": float(bool(row["chosen"])),
            }
            mlflow.log_metrics({k: float(v) for k, v in values.items() if isinstance(v, (int, float))})


def log_training_run(
    tracking_uri: str,
    config: Mapping[str, Any],
    data_info: Mapping[str, Any],
    report: Mapping[str, Any],
    artifacts: list[Path],
    router_dir: Path,
    importance: Mapping[str, float],
    register: bool = True,
    bundle_dir: Path | None = None,
    selection: Mapping[str, Any] | None = None,
) -> str:
    """Log one training run and register its model; returns the run id. With ``bundle_dir`` the
    logged model carries the RouterBundle, so ``models:/tierroute@<alias>`` resolves to a bundle.
    With ``selection`` (a :meth:`tierroute.pipelines.training.selection.Selection.to_dict`) each family of
    the selection table is a nested run under this one (its OOF AIQ, interval, fit seconds, serve
    us, status, and whether it was chosen), and the table is logged as ``selection.json``."""
    mlflow = load_mlflow()
    import mlflow.pyfunc  # noqa: F811 - the submodule, onto the module load_mlflow returned

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri_for(tracking_uri))  # a registry URI set earlier in the process must not win
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            mlflow.create_experiment(EXPERIMENT, artifact_location=(db.parent / "artifacts").resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run() as run:
        params: dict[str, Any] = {}
        _flatten("", {"config": config, "data": data_info}, params)
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        metrics = {
            k: report[k]
            for k in ("aiq", "accuracy", "cost_per_query", "cost_per_correct", "ece", "apgr", "cpt50", "cpt80")
            if isinstance(report.get(k), (int, float))
        }
        for key in ("heuristic", "oracle", "random", "best_single", "cheapest"):
            b = report["baselines"][key]
            if b.get("accuracy") is None:  # the oracle of logged-only data is unknown
                continue
            metrics[f"{key}.accuracy"] = b["accuracy"]
            metrics[f"{key}.cost_per_query"] = b["cost_per_query"]
        from tierroute.pipelines.evaluation.stability import stability_metrics

        metrics |= stability_metrics(report.get("stability"))  # flip rates under prompt perturbations
        mlflow.log_metrics(metrics)
        if selection is not None:
            _log_selection(mlflow, selection)
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        mlflow.log_dict(dict(sorted(importance.items(), key=lambda kv: -kv[1])), "feature_importance.json")
        mlflow.log_artifacts(str(router_dir), artifact_path="router")
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        signature = ModelSignature(
            inputs=Schema(
                [
                    ColSpec("string", "prompt"),
                    ColSpec("string", "output_schema", required=False),
                    ColSpec("double", "latency_sla_ms", required=False),
                ]
            ),
            outputs=Schema([ColSpec("string")]),
        )
        pyfunc_class = type("TierrouteRouter", (RouterPyfunc, _pyfunc_base()), {"__module__": __name__})
        with warnings.catch_warnings():
            # An input example would make MLflow run the model at logging time (and trips pandas 3
            # deprecations inside MLflow); the explicit signature documents the input instead.
            warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=pyfunc_class(),
                artifacts={"router": str(router_dir), **({"bundle": str(bundle_dir)} if bundle_dir else {})},
                pip_requirements=["tierroute"],
                signature=signature,
            )
        if register:
            with _notices_off():
                mlflow.register_model(info.model_uri, REGISTERED_MODEL)
        return str(run.info.run_id)
