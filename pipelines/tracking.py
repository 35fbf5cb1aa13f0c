"""MLflow tracking for training runs: ``sqlite:///mlruns/mlflow.db`` by default, artifacts beside
it under ``mlruns/artifacts``; every run logs its frozen config, data hashes and row counts,
metrics, plots, feature importance and the model, which is registered as ``tierroute``.

mlflow is imported here only, inside functions (serving never imports it).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_TRACKING_URI", "REGISTERED_MODEL", "log_training_run", "save_router", "load_router", "RouterPyfunc"]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
REGISTERED_MODEL = "tierroute"
EXPERIMENT = "tierroute"


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


def _pyfunc_base() -> type:
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel  # type: ignore[no-any-return]


class RouterPyfunc:
    """MLflow pyfunc wrapper: a DataFrame of requests in, chosen model per request out."""

    def load_context(self, context: Any) -> None:
        self.router = load_router(context.artifacts["router"])

    def predict(self, context: Any, model_input: Any, params: Mapping[str, Any] | None = None) -> Any:
        from tierroute.request import parse_request

        requests = [parse_request({k: v for k, v in row.items() if v == v}) for row in model_input.to_dict(orient="records")]
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
                     importance: Mapping[str, float], register: bool = True) -> str:
    """Log one training run and register its model; returns the run id."""
    import mlflow
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri)
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
            metrics[f"{key}.accuracy"] = b["accuracy"]
            metrics[f"{key}.cost_per_query"] = b["cost_per_query"]
        mlflow.log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        mlflow.log_dict(dict(sorted(importance.items(), key=lambda kv: -kv[1])), "feature_importance.json")
        pyfunc_class = type("TierrouteRouter", (RouterPyfunc, _pyfunc_base()), {"__module__": __name__})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=pyfunc_class(), artifacts={"router": str(router_dir)},
            pip_requirements=["tierroute"],
        )
        if register:
            mlflow.register_model(info.model_uri, REGISTERED_MODEL)
        return str(run.info.run_id)
