"""The training job end to end on small synthetic data: outputs, MLflow run and registry, the
model read back by folder and by run id, and the config checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import CatalogueError, ConfigError
from tierroute.models.router import RouterParams
from tierroute.pipelines.synthetic import SyntheticConfig, generate, write_jsonl
from tierroute.pipelines.train import TrainConfig, run_train

TINY = RouterParams(n_estimators=30, n_folds=2, early_stopping_rounds=10)


def tiny_config(tmp_path: Path, **kwargs: object) -> TrainConfig:
    defaults: dict[str, object] = {
        "synthetic_requests": 240, "encoder": "none", "router": TINY, "out_dir": str(tmp_path / "run"),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", "cache_dir": str(tmp_path / "cache"),
    }
    return TrainConfig(**{**defaults, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("train")
    return tmp, run_train(tiny_config(tmp))


def test_train_writes_report_model_and_mlflow_run(trained) -> None:  # noqa: ANN001
    tmp, result = trained
    out = result.out_dir
    for name in ("evaluation/metrics.json", "evaluation/report.md", "evaluation/cost_quality.png", "evaluation/calibration.png",
                 "evaluation/tier_mix.png", "model/router.pkl",
                 "model/manifest.json", "ingest/quarantine.jsonl", "data/synthetic.jsonl", "train.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert 0 < metrics["aiq"] <= 1 and metrics["requests"] == result.report["requests"]
    assert set(metrics["baselines"]) >= {"heuristic", "oracle", "random", "best_single", "cheapest", "singles"}
    # the synthetic workload has SLAs and latencies: violation rates are measured per router
    assert set(metrics["sla_violation_rate"]) >= {"learned", "heuristic", "gpt-4o"}
    assert all(0 <= v <= 1 for v in metrics["sla_violation_rate"].values())
    assert sum(b["count"] for b in metrics["calibration"]) == metrics["requests"] * 3
    assert "Per task" in (out / "evaluation" / "report.md").read_text()
    summary = result.summary()
    assert summary["run_id"] == result.run_id and summary["aiq"] == metrics["aiq"]
    assert set(summary["baselines"]["singles"]) == {"claude-3-haiku", "gpt-4o-mini", "gpt-4o"}

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    run = mlflow.get_run(result.run_id)
    assert run.data.metrics["aiq"] == pytest.approx(metrics["aiq"])
    assert run.data.params["config.encoder"] == "none" and run.data.params["data.catalogue"] == "article"
    versions = mlflow.MlflowClient().search_model_versions("name='tierroute'")
    assert [v.run_id for v in versions] == [result.run_id]


def test_the_model_reads_back_by_folder_and_by_run_id(trained) -> None:  # noqa: ANN001
    from tierroute.pipelines.tracking import load_router_from
    from tierroute.request import Request

    tmp, result = trained
    requests = [Request("Classify: my router was charged twice.", ["billing", "technical"]), Request("Fix this code.")]
    expected = result.router.decide(requests)
    by_folder = load_router_from(str(result.out_dir))
    by_run = load_router_from(result.run_id, tracking_uri=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    np.testing.assert_array_equal(by_folder.decide(requests), expected)
    np.testing.assert_array_equal(by_run.decide(requests), expected)
    with pytest.raises(ConfigError, match=r"is neither a folder holding a trained router"):
        load_router_from(str(tmp / "nowhere"))


def test_synthetic_data_is_seeded_and_reproducible(tmp_path: Path) -> None:
    a = list(generate(SyntheticConfig(30, seed=3)))
    assert a == list(generate(SyntheticConfig(30, seed=3)))
    assert a != list(generate(SyntheticConfig(30, seed=4)))
    assert len(a) == 90 and {r["model"] for r in a} == {"claude-3-haiku", "gpt-4o-mini", "gpt-4o"}
    path = write_jsonl(SyntheticConfig(30, seed=3), tmp_path / "s.jsonl")
    assert len(path.read_text().splitlines()) == 90


def test_training_on_files_with_eval_data_and_static_encoder(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    train = write_jsonl(SyntheticConfig(160, seed=1), tmp_path / "train.jsonl")
    test = write_jsonl(SyntheticConfig(60, seed=2), tmp_path / "test.jsonl")
    result = run_train(tiny_config(tmp_path, data=(str(train),), eval_data=(str(test),), encoder="static", tracking_uri=""))
    assert result.run_id is None and result.report["requests"] == 60
    assert result.router.feature_spec_.embedding.startswith("static-minilm-bpe:64:")  # 64 dims by default
    cached = list((tmp_path / "cache").glob("static-*/static_table.npy"))
    assert len(cached) == 1  # the distilled table is cached for reruns on the same data
    manifest = json.loads((result.out_dir / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["encoder"]["id"] == result.router.feature_spec_.embedding  # the bundle serves that encoder
    assert set(manifest["files"]) == {"model.onnx", "static_ids.npy", "static_table.npy", "static.json"}


def test_config_and_catalogue_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^The 'encoder' parameter of TrainConfig must be one of \('static', 'minilm', 'none'\)\. Got 'bert' instead\.$"):
        TrainConfig(encoder="bert")
    with pytest.raises(ConfigError, match=r"^The 'test_fraction' parameter of TrainConfig must be a finite number in the range \[0\.05, 0\.95\]"):
        TrainConfig(test_fraction=1.0)
    rows = [{"request_id": f"r{i}", "prompt": "p", "model": "mystery-model", "quality": 1, "cost_usd": 0.1} for i in range(3)]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"^No built-in catalogue lists every model in the data \(mystery-model\)"):
        run_train(tiny_config(tmp_path, data=(str(log),), tracking_uri=""))
