"""Family selection on tiny synthetic data: it sees the training requests only, ties go to the
cheaper family to serve, the budget skips families, pinned choices skip the search, and the table
reaches report.md, metrics.json and MLflow (a nested run per family)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.learned import LearnedConfig
from tierroute.models.router import RouterParams
from tierroute.pipelines.training.selection import (
    POOL,
    FamilyResult,
    FamilySpec,
    SelectConfig,
    _choose,
    default_pool,
    family_config,
    select_family,
    selection_markdown,
)

TINY = RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=10)
NONE_POOL = (FamilySpec("pooled", "none"), FamilySpec("per_candidate", "none"))


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory):
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest
    from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl

    tmp = tmp_path_factory.mktemp("selection")
    path = write_jsonl(SyntheticConfig(200, seed=1), tmp / "synthetic.jsonl")
    data = RoutingData.from_frame(run_ingest(IngestConfig(paths=(str(path),), out_dir=str(tmp / "ingest"))).to_pandas())
    return tmp, data


@pytest.fixture(scope="module")
def selected(workload):
    from tierroute.models.catalogue import builtin_catalogue

    tmp, data = workload
    train, held_out = data.subset(np.arange(150)), data.subset(np.arange(150, data.n_requests))
    selection = select_family(
        train, builtin_catalogue("article"), SelectConfig(pool=NONE_POOL, n_boot=50), tmp / "cache", base=LearnedConfig(router=TINY)
    )
    return train, held_out, selection


def test_selection_fits_on_the_training_requests_only(selected) -> None:
    from tierroute.hashing import prompt_hash

    train, held_out, selection = selected
    assert set(selection.request_ids) == set(train.request_ids)
    assert not set(selection.request_ids) & set(held_out.request_ids)
    train_hashes = {prompt_hash(r.prompt) for r in train.requests}
    for row in selection.table:
        assert row.status == "ok", row.status
        assert row.router.train_prompt_hashes_ == train_hashes  # every fitted family saw these and only these
        assert row.aiq_low <= row.aiq <= row.aiq_high and 0 < row.aiq <= 1
        assert row.fit_seconds > 0 and row.serve_us > 0 and row.bundleable
    assert sum(r.chosen for r in selection.table) == 1
    chosen = next(r for r in selection.table if r.chosen)
    assert chosen.family == selection.chosen
    # all training requests with the final parameters: the chosen family's router is the final model
    assert selection.router is chosen.router and selection.router.config == family_config(LearnedConfig(router=TINY), selection.chosen)
    d = selection.to_dict()
    assert d["chosen"] == selection.chosen.name and len(d["rows"]) == 2 and json.dumps(d)
    assert any("(chosen)" in line for line in selection_markdown(d))


def _row(spec: FamilySpec, aiq: float, noise: float, seed: int = 0) -> FamilyResult:
    boot = aiq + np.random.default_rng(seed).normal(0.0, noise, 200)
    return FamilyResult(spec, "ok", aiq, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975)), 1.0, boot=boot)


def test_ties_go_to_the_cheaper_family_to_serve() -> None:
    cheap, dear = FamilySpec("pooled", "none"), FamilySpec("per_candidate", "static", 256)
    config = SelectConfig()
    # within epsilon: the cheaper wins though a little worse
    assert _choose([_row(dear, 0.800, 0.001), _row(cheap, 0.797, 0.001)], config).family == cheap
    # beyond the cap: the better wins
    assert _choose([_row(dear, 0.830, 0.02), _row(cheap, 0.800, 0.02)], config).family == dear
    # between epsilon and the cap: a tie only when the paired interval of the gap includes 0
    noisy = [_row(dear, 0.808, 0.02, seed=1), _row(cheap, 0.800, 0.02, seed=2)]
    assert _choose(noisy, config).family == cheap
    same = np.random.default_rng(3).normal(0.0, 0.0005, 200)
    sure = [FamilyResult(dear, "ok", 0.808, boot=0.808 + same), FamilyResult(cheap, "ok", 0.800, boot=0.800 + same)]
    assert _choose(sure, config).family == dear
    static = FamilySpec("pooled", "static", 64).serve_rank()
    assert cheap.serve_rank() < static < dear.serve_rank() < FamilySpec("pooled", "minilm").serve_rank()
    # a tied family whose refit on all requests would overrun what is left of the budget is not chosen
    slow = _row(cheap, 0.797, 0.001)
    slow.refit_seconds = 120.0
    assert _choose([_row(dear, 0.800, 0.001), slow], config, left=60.0).family == dear
    assert _choose([_row(dear, 0.800, 0.001), slow], config, left=600.0).family == cheap
    # one needing no refit (fitted on every request already) stays eligible once the budget is spent
    assert _choose([_row(dear, 0.800, 0.001), _row(cheap, 0.797, 0.001)], config, left=-30.0).family == cheap
    # a family that is not bundleable (or did not fit) is never chosen
    skipped = FamilyResult(cheap, "not bundleable", 0.9)
    assert _choose([skipped, _row(dear, 0.7, 0.01)], config).family == dear
    with pytest.raises(ConfigError, match="No router family could be fitted"):
        _choose([skipped], config)


def test_the_budget_skips_families_that_would_overrun_it(workload) -> None:
    from tierroute.models.catalogue import builtin_catalogue

    tmp, data = workload
    selection = select_family(
        data,
        builtin_catalogue("article"),
        SelectConfig(pool=NONE_POOL, budget_min=0.0, n_boot=20),
        tmp / "cache",
        base=LearnedConfig(router=TINY),
    )
    statuses = [r.status for r in selection.table]
    assert statuses[0] == "ok" and statuses[1:] == ["skipped (budget)"]  # the first always runs
    assert selection.chosen == selection.table[0].family
    assert "skipped (budget)" in "\n".join(selection_markdown(selection.to_dict()))


def test_large_data_selects_on_a_stratified_subsample_and_leaves_the_refit_to_train(workload) -> None:
    from tierroute.models.catalogue import builtin_catalogue

    tmp, data = workload
    config = SelectConfig(pool=NONE_POOL[:1], full_cells=300, n_boot=20)
    selection = select_family(data, builtin_catalogue("article"), config, tmp / "cache", base=LearnedConfig(router=TINY))
    assert 90 <= len(selection.request_ids) <= 110 and set(selection.request_ids) <= set(data.request_ids)
    assert selection.router is None and "subsample" in selection.mode
    row = selection.table[0]  # its refit (all requests, the final folds) is projected from its fit
    assert row.refit_seconds > row.fit_seconds and "refit ~" in "\n".join(selection_markdown(selection.to_dict()))
    assert set(data.subset(np.isin(data.request_ids, selection.request_ids)).tasks) == set(data.tasks)


def test_pinning_restricts_the_pool() -> None:
    assert {s.kind for s in default_pool(kind="pooled")} == {"pooled"}
    assert {s.encoder for s in default_pool(encoder="none")} == {"none"} and len(default_pool(encoder="none")) >= 2
    assert {s.dims for s in default_pool(encoder="static")} == {64, 256}
    assert {s.dims for s in default_pool(encoder="static", static_dims=128)} == {128}
    assert default_pool(kind="pooled", encoder="minilm") == (FamilySpec("pooled", "minilm"),)
    assert {(s.kind, s.encoder) for s in POOL} >= {(k, e) for k in ("pooled", "per_candidate") for e in ("none", "static", "minilm")}
    with pytest.raises(ConfigError, match="dims"):
        FamilySpec("pooled", "static")


def _tiny_train(tmp_path: Path, **kwargs: object):
    from tierroute.pipelines.training.train import TrainConfig, run_train

    defaults: dict[str, object] = {"tracking_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    config = TrainConfig(
        synthetic_requests=200,
        learned=LearnedConfig(router=TINY),
        out_dir=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        **{**defaults, **kwargs},
    )  # type: ignore[arg-type]
    return run_train(config)


def test_train_with_auto_reports_the_table_and_logs_a_nested_run_per_family(tmp_path: Path) -> None:
    import mlflow

    from tierroute.pipelines.training.train import TrainConfig

    assert TrainConfig().kind == "auto" and TrainConfig().encoder == "auto"
    result = _tiny_train(tmp_path, encoder="none")  # kind auto, encoder pinned: the kinds are searched
    metrics = json.loads((result.out_dir / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    rows = metrics["selection"]["rows"]
    assert {r["encoder"] for r in rows} == {"none"} and {r["kind"] for r in rows} >= {"pooled", "per_candidate"}
    assert metrics["selection"]["chosen"] == metrics["family"]["name"] and metrics["family"]["selected"]
    assert metrics["selection"]["requests"] == 200 - metrics["requests"]  # the training split, never the test
    chosen = FamilySpec(metrics["family"]["kind"], "none")
    assert result.router.config.router.kind == chosen.kind and result.router.encoder is None
    report = (result.out_dir / "evaluation" / "report.md").read_text(encoding="utf-8")
    assert "Family selection" in report and f"**{chosen.name}** (chosen)" in report
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    parent = mlflow.get_run(result.run_id)
    assert parent.data.params["selection.chosen"] == chosen.name
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id], output_format="list", filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert sorted(c.data.params["name"] for c in children) == sorted(r["name"] for r in rows)
    assert [c.data.tags["chosen"] for c in children].count("true") == 1
    assert all("oof_aiq" in c.data.metrics for c in children if c.data.params["status"] == "ok")


def test_train_with_kind_and_encoder_pinned_skips_the_search(tmp_path: Path) -> None:
    result = _tiny_train(tmp_path, kind="per_candidate", encoder="none", tracking_uri="")
    metrics = json.loads((result.out_dir / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    assert "selection" not in metrics and metrics["family"] == {**FamilySpec("per_candidate", "none").to_dict(), "selected": False}
    assert result.router.config.router.kind == "per_candidate"
    assert "Family selection" not in (result.out_dir / "evaluation" / "report.md").read_text(encoding="utf-8")


def test_config_checks() -> None:
    from tierroute.pipelines.training.train import TrainConfig

    with pytest.raises(ConfigError, match="'kind' parameter of TrainConfig"):
        TrainConfig(kind="forest")
    with pytest.raises(ConfigError, match="'encoder' parameter of TrainConfig"):
        TrainConfig(encoder="bert")
    with pytest.raises(ConfigError, match="budget_min"):
        SelectConfig(budget_min=-1)
    from tierroute.pipelines.training.selection import auto_budget_min

    # 8 min at 10k requests x 10 candidates (select + refit within ~10 min on 2 cores), less below
    assert auto_budget_min(10_000, 10) == 8.0 and auto_budget_min(50_000, 10) == 8.0
    assert auto_budget_min(2_250, 3) == 1.5 and auto_budget_min(2_205, 11) == pytest.approx(1.94, abs=0.01)


def test_retrain_keeps_the_family_the_champion_s_selection_chose(tmp_path: Path) -> None:
    import mlflow

    from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl
    from tierroute.pipelines.lifecycle.retrain import RetrainConfig, run_retrain

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    first = write_jsonl(SyntheticConfig(160, seed=1), tmp_path / "week1.jsonl")
    champion = _tiny_train(tmp_path, data=(str(first),), encoder="none")  # kind auto: selected
    chosen = champion.report["family"]
    assert chosen["selected"]
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("tierroute", "champion", "1")
    new = write_jsonl(SyntheticConfig(120, seed=2), tmp_path / "week2.jsonl")
    run_retrain(RetrainConfig(logs=(str(new),), tracking_uri=uri, out_dir=str(tmp_path / "r")))
    metrics = json.loads((tmp_path / "r" / "train" / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    assert "selection" not in metrics  # not re-selected: the champion's family, pinned
    assert metrics["family"] == {**chosen, "selected": False}


def test_the_subsample_plan_speeds_up_only_lightgbm_params(workload) -> None:
    """A carried-over low-rank router (retrain) has a learning rate but no trees: only its folds shrink."""
    from tierroute.models.lowrank import LowRankParams
    from tierroute.pipelines.training.selection import _plan

    _, data = workload
    sample, fit_base, mode = _plan(data, LearnedConfig(router=LowRankParams(n_folds=5)), SelectConfig(full_cells=300))
    assert "subsample" in mode and sample.n_requests < data.n_requests
    assert fit_base.router == LowRankParams(n_folds=3)
