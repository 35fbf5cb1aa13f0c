"""MLflow tracking for training runs: ``sqlite:///mlruns/mlflow.db`` by default, artifacts beside
it under ``mlruns/artifacts``; every run logs its frozen config, data hashes and row counts,
metrics, plots, feature importance and the model, which is registered as ``tierroute``.

mlflow is imported here only, inside functions (serving never imports it).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TRACKING_URI", "REGISTERED_MODEL", "registry_uri_for", "log_training_run", "save_router", "load_router", "RouterPyfunc",
    "load_router_from",
]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
REGISTERED_MODEL = "tierroute"
EXPERIMENT = "tierroute"


def _mlflow() -> Any:
    """Import mlflow with its usage telemetry off: tierroute makes no hidden network calls."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def registry_uri_for(tracking_uri: str) -> str:
    """The model registry every tierroute command uses with ``tracking_uri``: the tracking store
    itself (one rule, so train, promote and serve agree). Not $MLFLOW_REGISTRY_URI: mlflow exports
    that variable itself whenever a registry URI is set, so within one process it goes stale."""
    return tracking_uri


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
        "kind": "tierroute.learned_router", "version": 1, "candidates": list(router.candidates_),
        "policy": router.policy_.to_dict(), "config": router.config.to_dict(),
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
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri_for(tracking_uri))  # a registry URI set earlier in the process must not win
    try:
        local = mlflow.artifacts.download_artifacts(run_id=model, artifact_path="router")
    except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds for an unknown run
        raise ConfigError(f"MLflow run {model!r} has no router artifact at {tracking_uri} ({type(exc).__name__}). Check the run id and --tracking-uri.") from None
    return load_router(local)


def _pyfunc_base() -> type:
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel  # type: ignore[no-any-return]


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

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # MLflow reads hints as a signature
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


def log_training_run(tracking_uri: str, config: Mapping[str, Any], data_info: Mapping[str, Any],
                     report: Mapping[str, Any], artifacts: list[Path], router_dir: Path,
                     importance: Mapping[str, float], register: bool = True, bundle_dir: Path | None = None) -> str:
    """Log one training run and register its model; returns the run id. With ``bundle_dir`` the
    logged model carries the RouterBundle, so ``models:/tierroute@<alias>`` resolves to a bundle."""
    mlflow = _mlflow()
    import mlflow.pyfunc

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
        metrics = {k: report[k] for k in ("aiq", "accuracy", "cost_per_query", "cost_per_correct", "ece", "apgr", "cpt50", "cpt80")
                   if isinstance(report.get(k), (int, float))}
        for key in ("heuristic", "oracle", "random", "best_single", "cheapest"):
            b = report["baselines"][key]
            if b.get("accuracy") is None:  # the oracle of logged-only data is unknown
                continue
            metrics[f"{key}.accuracy"] = b["accuracy"]
            metrics[f"{key}.cost_per_query"] = b["cost_per_query"]
        mlflow.log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        mlflow.log_dict(dict(sorted(importance.items(), key=lambda kv: -kv[1])), "feature_importance.json")
        mlflow.log_artifacts(str(router_dir), artifact_path="router")
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        signature = ModelSignature(
            inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "output_schema", required=False),
                           ColSpec("double", "latency_sla_ms", required=False)]),
            outputs=Schema([ColSpec("string")]),
        )
        pyfunc_class = type("TierrouteRouter", (RouterPyfunc, _pyfunc_base()), {"__module__": __name__})
        with warnings.catch_warnings():
            # An input example would make MLflow run the model at logging time (and trips pandas 3
            # deprecations inside MLflow); the explicit signature documents the input instead.
            warnings.filterwarnings("ignore", message=".*An input example was not provided", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=pyfunc_class(),
                artifacts={"router": str(router_dir), **({"bundle": str(bundle_dir)} if bundle_dir else {})},
                pip_requirements=["tierroute"], signature=signature,
            )
        if register:
            mlflow.register_model(info.model_uri, REGISTERED_MODEL)
        return str(run.info.run_id)
