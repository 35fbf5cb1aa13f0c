"""The Dask engine: the heavy steps of ``tierroute train`` / ``retrain`` on a Dask cluster.

    with DaskEngine(DaskConfig("tcp://scheduler:8786")) as engine:     # or DaskConfig("local")
        run_train(TrainConfig(..., engine="dask", scheduler="tcp://scheduler:8786"))

What runs where:

- **ingestion**: every input file is read and its rows normalised (types, ranges, schemas) on a
  worker; the driver then applies the order-dependent checks (one prompt per request id, one
  outcome per request x model) exactly as the local path does, so quarantine and table match it;
- **features and embeddings**: the request signals and the static embedding of chunks of prompts
  are computed on the workers (the encoder is sent once);
- **LightGBM**: every booster (each fold's and the final one) is trained data-parallel by
  ``lightgbm.dask`` over the workers, with the design matrix split into partitions. Early
  stopping is reproduced on the driver from the validation loss after each tree (the same rule:
  stop after ``early_stopping_rounds`` without improvement), so the iteration counts follow the
  local engine's.

The driver still holds the pivoted outcome matrices and the (requests x features) matrix, so the
data must fit the driver's memory (a million requests with 64-d embeddings is about 0.4 GB);
calibration, the policy knob, evaluation and export run there as in the local engine.
Distributed LightGBM finds bin boundaries and split statistics over the partitions, so its trees
are close to, not identical with, the local ones; ``tests/pipelines/training/test_distributed.py`` states
the tolerance (probabilities and decisions against local training on the same data).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError

__all__ = ["DaskConfig", "DaskEngine", "ENGINES"]

ENGINES = ("local", "dask")


@dataclass(frozen=True)
class DaskConfig:
    """Where the cluster is. ``scheduler``: a scheduler address (``tcp://host:8786``), or ``local``
    for a LocalCluster of ``n_workers`` processes on this machine (tests, trying it out).
    ``chunk_requests``: requests per feature task."""

    scheduler: str = "local"
    n_workers: int = 2
    threads_per_worker: int = 1
    chunk_requests: int = 20_000
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.scheduler, str) or not self.scheduler:
            raise ConfigError(
                f"The 'scheduler' parameter of DaskConfig must be an address like tcp://host:8786 or "
                f"'local'. Got {self.scheduler!r} instead."
            )
        check_int(self.n_workers, "n_workers", "DaskConfig", 1)
        check_int(self.threads_per_worker, "threads_per_worker", "DaskConfig", 1)
        check_int(self.chunk_requests, "chunk_requests", "DaskConfig", 100)
        check_number(self.connect_timeout_s, "connect_timeout_s", "DaskConfig", 0.1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _features_chunk(requests: Sequence[Any], view: Any) -> np.ndarray:
    """Runs on a worker: the training feature assembly (no embedding cache on a worker)."""
    from tierroute.models.learned import request_features

    return request_features(view.extractor, view.encoder, requests)


def _normalise_file(adapter: Any, path: Any, fmt: str, correct_threshold: float) -> list[tuple[str, Any, Any]]:
    """Runs on a worker: every row of one file as (where, canonical record | (reason, detail), its
    raw fields: the quarantine file keeps them if the driver's order-dependent checks refuse it)."""
    from tierroute.pipelines.data.ingest import guarded_rows, ingested_rows
    from tierroute.pipelines.data.records import OutcomeValidator, RowIssue

    validator = OutcomeValidator(correct_threshold=correct_threshold)
    rows = ingested_rows(path) if fmt == "ingested" else adapter.rows(path)
    out: list[tuple[str, Any, Any]] = []
    for raw in guarded_rows(rows, path, fmt):
        if raw.issue:
            out.append((raw.where, (raw.issue, raw.detail), raw.fields))
            continue
        result = validator.normalise(raw.fields)
        out.append((raw.where, (result.reason, result.detail) if isinstance(result, RowIssue) else result, raw.fields))
    return out


def _stopping_point(losses: np.ndarray, patience: int) -> int:
    """The iteration early stopping keeps (1-based): the best loss seen before ``patience`` trees in
    a row brought no improvement (LightGBM's rule, replayed on a recorded curve)."""
    best, best_at = np.inf, 0
    for i, loss in enumerate(losses):
        if loss < best:
            best, best_at = loss, i
        elif i - best_at >= patience:
            break
    return best_at + 1


def _staged_logloss(booster: Any, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Validation log loss after each tree, from the leaves every row falls in (one pass)."""
    leaves = booster.predict(X, pred_leaf=True).reshape(len(X), -1)
    n_trees = leaves.shape[1]
    values = np.zeros_like(leaves, dtype=np.float64)
    for t in range(n_trees):
        table = np.array([booster.get_leaf_output(t, leaf) for leaf in range(int(leaves[:, t].max()) + 1)])
        values[:, t] = table[leaves[:, t]]
    raw = np.cumsum(values, axis=1)
    p = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-15, 1 - 1e-15)
    loss = -(y[:, None] * np.log(p) + (1 - y[:, None]) * np.log(1 - p))
    return np.average(loss, axis=0, weights=w)


class DaskEngine:
    """A connection to a Dask cluster for one job (a context manager: it closes what it opened)."""

    def __init__(self, config: DaskConfig | None = None) -> None:
        self.config = config if config is not None else DaskConfig()
        self.client: Any = None
        self._cluster: Any = None

    def __enter__(self) -> DaskEngine:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ConfigError("--engine dask needs dask.distributed: pip install 'tierroute[dist]'.") from exc
        c = self.config
        if c.scheduler == "local":
            self._cluster = LocalCluster(
                n_workers=c.n_workers, threads_per_worker=c.threads_per_worker, processes=True, dashboard_address=":0"
            )
            self.client = Client(self._cluster)
        else:
            try:
                self.client = Client(c.scheduler, timeout=f"{c.connect_timeout_s}s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"Could not reach the Dask scheduler at {c.scheduler!r} ({type(exc).__name__}: {exc}). "
                    "Start one (`dask scheduler`, then `dask worker ADDRESS` on each machine) or pass "
                    "--scheduler local."
                ) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    def _require(self) -> Any:
        if self.client is None:
            raise ConfigError("This DaskEngine is not connected; use it as `with DaskEngine(config) as engine:`.")
        return self.client

    @property
    def n_workers(self) -> int:
        return max(1, len(self._require().scheduler_info()["workers"]))

    def map_ordered(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any) -> list[Any]:
        """``fn(item, *args)`` for every item on the workers, results in the items' order."""
        client = self._require()
        shared = [client.scatter([a], broadcast=True)[0] for a in args]  # sent to each worker once
        futures = [client.submit(fn, item, *shared, pure=False) for item in items]
        return client.gather(futures)

    # -- the three distributed steps -------------------------------------------------------------
    def normalise_files(
        self, plan: Sequence[tuple[Any, str, int]], adapters: dict[str, Any], correct_threshold: float
    ) -> list[list[tuple[str, Any, Any]]]:
        """Each planned file's rows, normalised on a worker (see :func:`_normalise_file`)."""
        client = self._require()
        futures = [client.submit(_normalise_file, adapters.get(fmt), path, fmt, correct_threshold, pure=False) for path, fmt, _ in plan]
        return client.gather(futures)

    def features(self, router: Any, requests: Sequence[Any]) -> np.ndarray:
        """The router's feature matrix for ``requests``, chunks computed on the workers."""
        self._require()
        size = self.config.chunk_requests
        chunks = [list(requests[i : i + size]) for i in range(0, len(requests), size)] or [[]]
        light = _FeatureView(router.extractor, router.encoder)
        parts = self.map_ordered(_features_chunk, chunks, light)
        return np.vstack(parts).astype(np.float32)

    def fit_booster(
        self,
        params: Any,
        Xtr: np.ndarray,
        ytr: np.ndarray,
        wtr: np.ndarray | None,
        Xva: np.ndarray | None,
        yva: np.ndarray | None,
        wva: np.ndarray | None,
        rounds: int,
        categorical: list[int],
    ) -> Any:
        """One LightGBM booster trained by ``lightgbm.dask`` (the LGBMEstimator trainer hook). With a
        validation set, the kept iteration follows early stopping's rule on the validation loss."""
        import dask.array as da
        from lightgbm.dask import DaskLGBMClassifier

        client = self._require()
        parts = max(1, min(self.n_workers, len(ytr) // 1000 or 1))
        chunk = -(-len(ytr) // parts)
        model = DaskLGBMClassifier(
            client=client,
            objective="binary",
            n_estimators=rounds,
            learning_rate=params.learning_rate,
            num_leaves=params.num_leaves,
            min_child_samples=params.min_child_samples,
            colsample_bytree=params.feature_fraction,
            subsample=params.bagging_fraction,
            subsample_freq=1 if params.bagging_fraction < 1 else 0,
            reg_lambda=params.lambda_l2,
            random_state=params.seed,
            deterministic=True,
            verbosity=-1,
        )
        X = da.from_array(np.asarray(Xtr, dtype=np.float32), chunks=(chunk, Xtr.shape[1]))
        y = da.from_array(np.asarray(ytr, dtype=np.float64), chunks=chunk)
        w = None if wtr is None else da.from_array(np.asarray(wtr, dtype=np.float64), chunks=chunk)
        with warnings.catch_warnings():  # the sklearn wrapper always sets n_jobs; Dask sets threads itself
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            model.fit(X, y, sample_weight=w, categorical_feature=categorical or "auto")
        booster = model.booster_
        usable = Xva is not None and yva is not None and len(yva) > 0 and len(np.unique(ytr)) > 1
        if usable:
            losses = _staged_logloss(booster, np.asarray(Xva, dtype=np.float32), np.asarray(yva, dtype=np.float64), wva)
            booster.best_iteration = _stopping_point(losses, params.early_stopping_rounds)
        return booster


@dataclass(frozen=True)
class _FeatureView:
    """What a worker needs to compute features: the signal extractor and the encoder."""

    extractor: Any
    encoder: Any
