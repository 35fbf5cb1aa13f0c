"""The Dask engine on a LocalCluster: ingestion and features identical to the local engine,
early stopping replayed exactly, and a router trained on the cluster that agrees with local
training within the stated tolerance.

Tolerance (distributed LightGBM bins and splits over partitions, so trees differ slightly): on the
same data, P(correct) within 0.06 of local on average, at least 85% identical decisions, and
held-out accuracy and AIQ within 0.03."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("lightgbm")

from tierroute.errors import ConfigError  # noqa: E402
from tierroute.models.learned import LearnedConfig
from tierroute.pipelines.training.distributed import DaskConfig, DaskEngine, _stopping_point  # noqa: E402


@pytest.fixture(scope="module")
def engine() -> Iterator[DaskEngine]:
    with DaskEngine(DaskConfig("local", n_workers=2)) as connected:
        yield connected


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_ingestion_on_the_cluster_matches_local(engine: DaskEngine, tmp_path: Path) -> None:
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    rows = list(generate(SyntheticConfig(40, seed=4)))
    a = _write(tmp_path / "a.jsonl", rows[:60] + [{"request_id": "x", "model": "m"}])  # one row missing fields
    b_rows = rows[60:] + [dict(rows[0]), dict(rows[1], prompt="another prompt")]  # a duplicate, a conflicting id
    b = _write(tmp_path / "b.jsonl", b_rows + [dict(rows[70], cost_usd=-1.0)])
    local = run_ingest(IngestConfig(paths=(str(a), str(b)), out_dir=str(tmp_path / "local")))
    dask = run_ingest(IngestConfig(paths=(str(a), str(b)), out_dir=str(tmp_path / "dask")), engine=engine)
    assert (
        local.reasons == dask.reasons == {"missing_field": 1, "duplicate_request_model": 1, "conflicting_request_id": 1, "negative_cost": 1}
    )
    assert local.to_pandas().equals(dask.to_pandas()) and len(dask.dataset) == 120
    assert (tmp_path / "local" / "quarantine.jsonl").read_text() == (tmp_path / "dask" / "quarantine.jsonl").read_text()
    assert local.inputs == dask.inputs


def test_features_on_the_cluster_are_the_local_features(engine: DaskEngine) -> None:
    from tierroute.features.static import StaticEncoder
    from tierroute.models.learned import LearnedRouter
    from tierroute.request import Request

    rng = np.random.default_rng(0)
    ids = np.arange(0, 3000, 3, dtype=np.int64)
    encoder = StaticEncoder(ids, rng.normal(size=(len(ids), 8)).astype(np.float32), name="tiny")
    router = LearnedRouter(encoder=encoder)
    requests = [
        Request(f"Extract the order id from message {i}: order #{i * 7} shipped.", None, 500.0 if i % 2 else None) for i in range(250)
    ]
    small = DaskEngine(DaskConfig("local", chunk_requests=100))
    small.client = engine.client  # same cluster, chunks of 100 requests
    np.testing.assert_array_equal(small.features(router, requests), router.features(requests))


def test_early_stopping_is_replayed_from_the_validation_curve() -> None:
    import lightgbm as lgb

    from tierroute.pipelines.training.distributed import _staged_logloss

    rng = np.random.default_rng(1)
    X = rng.normal(size=(1200, 5))
    y = (X[:, 0] + rng.normal(scale=1.5, size=1200) > 0).astype(float)
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 15, "verbosity": -1, "seed": 0, "deterministic": True}
    train, valid = lgb.Dataset(X[:900], y[:900]), lgb.Dataset(X[900:], y[900:])
    stopped = lgb.train(params, train, 300, valid_sets=[valid], callbacks=[lgb.early_stopping(10, verbose=False)])
    full = lgb.train(params, lgb.Dataset(X[:900], y[:900]), 300)
    losses = _staged_logloss(full, X[900:], y[900:], None)
    assert _stopping_point(losses, 10) == stopped.best_iteration
    p = full.predict(X[900:])
    assert losses[-1] == pytest.approx(float(np.mean(-(y[900:] * np.log(p) + (1 - y[900:]) * np.log(1 - p)))), rel=1e-6)


def test_stopping_point_rule() -> None:
    assert _stopping_point(np.array([3.0, 2.0, 2.5, 2.6, 1.0]), 2) == 2  # stops before the later improvement
    assert _stopping_point(np.array([3.0, 2.0, 2.5, 1.0]), 3) == 4
    assert _stopping_point(np.array([1.0]), 5) == 1


def test_a_router_trained_on_the_cluster_agrees_with_local_training(engine: DaskEngine) -> None:
    import pandas as pd

    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
    from tierroute.pipelines.evaluation.evaluate import evaluate

    frame = pd.DataFrame(list(generate(SyntheticConfig(900, seed=6))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    train, test = data.subset(np.arange(600)), data.subset(np.arange(600, 900))
    config = LearnedConfig(encoder="none", router=RouterParams(n_estimators=60, n_folds=2, early_stopping_rounds=10, n_threads=1))
    catalogue = builtin_catalogue("article")
    local = LearnedRouter(config).fit(train, catalogue)
    dask = LearnedRouter(config).fit(train, catalogue, engine=engine)
    p_local, _ = local.predict_proba(test.requests)
    p_dask, _ = dask.predict_proba(test.requests)
    assert np.abs(p_local - p_dask).mean() <= 0.06
    assert np.mean(local.decide(test.requests) == dask.decide(test.requests)) >= 0.85
    a, b = evaluate(local, test, catalogue), evaluate(dask, test, catalogue)
    assert abs(a["accuracy"] - b["accuracy"]) <= 0.03 and abs(a["aiq"] - b["aiq"]) <= 0.03
    assert not hasattr(dask.model_, "_trainer")  # the cluster connection is not kept (the router pickles)


def test_train_runs_on_a_dask_engine_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training import distributed
    from tierroute.pipelines.training.train import TrainConfig, run_train

    opened: list[DaskConfig] = []
    real = distributed.DaskEngine.__enter__

    def spy(self: DaskEngine) -> DaskEngine:
        opened.append(self.config)
        return real(self)

    monkeypatch.setattr(distributed.DaskEngine, "__enter__", spy)
    result = run_train(
        TrainConfig(
            synthetic_requests=300,
            encoder="none",
            engine="dask",
            scheduler="local",
            tracking_uri="",
            out_dir=str(tmp_path / "run"),
            cache_dir=str(tmp_path / "cache"),
            learned=LearnedConfig(router=RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1)),
        )
    )
    assert [c.scheduler for c in opened] == ["local"]
    assert (tmp_path / "run" / "bundle" / "manifest.json").is_file() and 0 < result.report["accuracy"] <= 1


def test_engine_errors_are_clear() -> None:
    from tierroute.pipelines.training.train import TrainConfig

    with pytest.raises(ConfigError, match=r"^The 'engine' parameter of TrainConfig must be one of \('local', 'dask'\)\. Got 'spark'"):
        TrainConfig(engine="spark")
    with pytest.raises(ConfigError, match=r"^The 'scheduler' parameter of DaskConfig must be an address like tcp://host:8786"):
        DaskConfig("")
    with pytest.raises(ConfigError, match=r"^This DaskEngine is not connected; use it as `with DaskEngine\(config\) as engine:`"):
        DaskEngine().features(None, [])
    with pytest.raises(ConfigError, match=r"^Could not reach the Dask scheduler at 'tcp://127\.0\.0\.1:9' .*Start one"):
        with DaskEngine(DaskConfig("tcp://127.0.0.1:9", connect_timeout_s=0.5)):
            pass


def test_cli_passes_the_engine_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from tierroute import cli
    from tierroute.pipelines.training import train

    seen = []

    def fake(config: object, progress: object = None) -> object:
        seen.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr(train, "run_train", fake)
    assert cli.main(["train", "--engine", "dask", "--scheduler", "tcp://10.0.0.5:8786", "--json"]) == 1
    assert seen[0].engine == "dask" and seen[0].scheduler == "tcp://10.0.0.5:8786"


def test_retrain_uses_one_engine_for_the_whole_job(engine: DaskEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    import mlflow

    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data import ingest
    from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl
    from tierroute.pipelines.lifecycle.retrain import RetrainConfig, run_retrain
    from tierroute.pipelines.training import distributed
    from tierroute.pipelines.training.train import TrainConfig, run_train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = write_jsonl(SyntheticConfig(160, seed=1), tmp_path / "week1.jsonl")
    run_train(
        TrainConfig(
            data=(str(first),),
            encoder="none",
            out_dir=str(tmp_path / "run1"),
            tracking_uri=uri,
            learned=LearnedConfig(router=RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1)),
        )
    )
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("tierroute", "champion", "1")
    new = write_jsonl(SyntheticConfig(120, seed=2), tmp_path / "week2.jsonl")
    opened: list[str] = []

    @contextlib.contextmanager
    def shared(config: DaskConfig) -> Iterator[DaskEngine]:
        opened.append(config.scheduler)
        yield engine

    engines_seen: list[object] = []
    real_ingest = ingest.run_ingest

    def spy(config: object, progress: object = None, catalogue: object = None, engine: object = None) -> object:
        engines_seen.append(engine)
        return real_ingest(config, progress, catalogue, engine)  # type: ignore[arg-type]

    monkeypatch.setattr(distributed, "DaskEngine", shared)
    monkeypatch.setattr(ingest, "run_ingest", spy)
    import tierroute.pipelines.training.train as train_module

    monkeypatch.setattr(train_module, "run_ingest", spy)
    result = run_retrain(
        RetrainConfig(logs=(str(new),), tracking_uri=uri, out_dir=str(tmp_path / "r"), engine="dask", scheduler="tcp://10.0.0.5:8786")
    )
    assert opened == ["tcp://10.0.0.5:8786"] and result.version == "2"
    # new logs, previous data, the challenger's training data on the cluster; the held-out file here
    assert engines_seen[:3] == [engine, engine, engine] and engines_seen[3] is None
