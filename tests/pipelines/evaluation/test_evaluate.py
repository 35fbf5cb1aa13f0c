"""The evaluation harness on a small learned router: baselines on the same requests, the tree's
tier mapped onto the candidates present, refusals, and the training-overlap count."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from tierroute.errors import DataValidationError
from tierroute.models.catalogue import builtin_catalogue
from tierroute.models.learned import LearnedConfig, LearnedRouter
from tierroute.models.router import RouterParams, stratified_folds
from tierroute.pipelines.data.dataset import RoutingData
from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
from tierroute.pipelines.evaluation.evaluate import evaluate

TINY = LearnedConfig(encoder="none", router=RouterParams(n_estimators=30, n_folds=2, early_stopping_rounds=10))


@pytest.fixture(scope="module")
def fitted() -> tuple[LearnedRouter, RoutingData, RoutingData]:
    frame = pd.DataFrame(list(generate(SyntheticConfig(300, seed=5))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    train, test = data.subset(np.arange(200)), data.subset(np.arange(200, 300))
    return LearnedRouter(TINY).fit(train, builtin_catalogue("article")), train, test


def test_report_compares_everything_on_the_same_requests(fitted) -> None:  # noqa: ANN001
    router, _, test = fitted
    report = evaluate(router, test, builtin_catalogue("article"))
    assert report["requests"] == 100 and report["requests_left_out"] == 0
    assert report["overlap_with_training"] == 0
    singles = {s["name"]: s for s in report["baselines"]["singles"]}
    for j, model in enumerate(test.candidates):
        assert singles[model]["accuracy"] == pytest.approx(np.mean(test.correct[:, j]))
    assert report["baselines"]["oracle"]["accuracy"] == pytest.approx(np.mean(test.correct.max(axis=1)))
    assert report["at_heuristic_accuracy"]["source"] == "test-curve hull"
    assert 0 <= report["aiq"] <= 1 and report["ece"] >= 0


def test_training_requests_are_counted_as_overlap(fitted) -> None:  # noqa: ANN001
    router, train, _ = fitted
    assert evaluate(router, train.subset(np.arange(40)), builtin_catalogue("article"))["overlap_with_training"] == 40


def test_the_tree_maps_onto_the_candidates_present(fitted) -> None:  # noqa: ANN001
    router, _, test = fitted
    catalogue = builtin_catalogue("article")
    # gpt-4o-mini (tier2's default) has no outcomes: tier2 decisions go to the nearest tier above
    keep = [j for j, m in enumerate(test.candidates) if m != "gpt-4o-mini"]
    reduced = dataclasses.replace(
        test,
        candidates=tuple(test.candidates[j] for j in keep),
        correct=test.correct[:, keep],
        quality=test.quality[:, keep],
        cost=test.cost[:, keep],
        latency=test.latency[:, keep],
    )
    from tierroute.models.heuristic import tier_candidate as _tier_model

    assert _tier_model(catalogue, "tier2", reduced.candidates) == "gpt-4o"
    assert _tier_model(catalogue, "tier1", reduced.candidates) == "claude-3-haiku"


def test_evaluation_without_complete_requests_is_refused(fitted) -> None:  # noqa: ANN001
    router, _, test = fitted
    correct = test.correct.copy()
    correct[:, 0] = np.nan
    broken = dataclasses.replace(test, correct=correct)
    with pytest.raises(
        DataValidationError,
        match=r"^No request in the evaluation data has an outcome for every candidate, "
        r"nor a logged choice with its propensity "
        r"\(100 requests; no outcomes at all for \['claude-3-haiku'\]\)",
    ):
        evaluate(router, broken, builtin_catalogue("article"))


def test_folds_fill_evenly_across_many_small_tasks() -> None:
    strata = np.repeat(np.arange(57), 7)  # 57 tasks of 7 requests
    counts = np.bincount(stratified_folds(strata, 5, seed=0), minlength=5)
    assert counts.max() - counts.min() <= 1
    singletons = stratified_folds(np.arange(10), 5, seed=0)
    assert sorted(np.bincount(singletons).tolist()) == [2, 2, 2, 2, 2]


def test_per_task_figures_add_up(fitted) -> None:  # noqa: ANN001
    router, _, test = fitted
    report = evaluate(router, test, builtin_catalogue("article"))
    per_task = report["per_task"]
    assert sum(t["requests"] for t in per_task.values()) == report["requests"]
    weighted = sum(t["requests"] * t["learned"]["accuracy"] for t in per_task.values()) / report["requests"]
    assert weighted == pytest.approx(report["learned"]["accuracy"])
    heuristic_cost = sum(t["requests"] * t["heuristic"]["cost_per_query"] for t in per_task.values()) / report["requests"]
    assert heuristic_cost == pytest.approx(report["baselines"]["heuristic"]["cost_per_query"])


def test_equal_accuracy_rows_are_real_swept_points(fitted) -> None:  # noqa: ANN001
    router, _, test = fitted
    report = evaluate(router, test, builtin_catalogue("article"))
    for key, target in (
        ("at_heuristic_accuracy", report["baselines"]["heuristic"]["accuracy"]),
        ("at_best_single_accuracy", report["baselines"]["best_single"]["accuracy"]),
    ):
        at = report[key]["curve_point"]
        reaching = [c for c in report["curve"] if c["accuracy"] >= target]
        if not reaching:
            assert at is None
            continue
        assert at in [{**c, "cost_per_correct": c["cost_per_query"] / c["accuracy"]} for c in reaching]
        assert at["cost_per_query"] == min(c["cost_per_query"] for c in reaching)
        assert 0.0 <= at["frontier_share"] <= 1.0
        if report[key]["cost_per_query"] is not None:  # the hull never costs more than a real point
            assert report[key]["cost_per_query"] <= at["cost_per_query"] + 1e-12


def test_cheapest_reaching_picks_the_cheapest_point_at_or_above_the_accuracy() -> None:
    from tierroute.pipelines.evaluation.evaluate import _cheapest_reaching

    curve = [{"accuracy": 0.5, "cost_per_query": 1.0}, {"accuracy": 0.8, "cost_per_query": 4.0}, {"accuracy": 0.9, "cost_per_query": 3.0}]
    assert _cheapest_reaching(curve, 0.8) == {"accuracy": 0.9, "cost_per_query": 3.0, "cost_per_correct": 3.0 / 0.9}
    assert _cheapest_reaching(curve, 0.95) is None


# -- logged requests: the chosen model's outcome and its propensity -----------------------------


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    return frame


@pytest.fixture(scope="module")
def logged_test() -> RoutingData:
    """The `fitted` fixture's 100 test requests as a production log (the tree, 30% exploration)."""
    from tierroute.pipelines.data.synthetic import production_log

    rows = list(production_log(SyntheticConfig(300, seed=5), epsilon=0.3, seed=2))[200:]
    return RoutingData.from_frame(_frame(rows))


def test_logged_requests_are_judged_by_doubly_robust_estimates(fitted, logged_test: RoutingData) -> None:  # noqa: ANN001
    router, _, test = fitted
    assert logged_test.request_ids == test.request_ids and logged_test.logged_only.all()
    catalogue = builtin_catalogue("article")
    report = evaluate(router, logged_test, catalogue)
    assert report["estimator"] == "dr" and report["logged_requests"] == 100 and report["requests"] == 100
    off = report["off_policy"]
    assert set(off) == {"requests", "learned", "heuristic", *test.candidates}
    assert off["learned"]["accuracy"]["dr"]["value"] == pytest.approx(report["accuracy"])
    assert off["learned"]["cost_per_query"]["ips"]["n"] == 100
    assert all(off[m]["accuracy"]["snips"]["estimator"] == "snips" for m in ("learned", "heuristic", *test.candidates))
    oracle = report["baselines"]["oracle"]
    assert oracle == {
        "name": "oracle",
        "accuracy": None,
        "cost_per_query": None,
        "cost_per_correct": None,
        "note": "benchmarked requests only (0): a logged request's oracle is unknown",
    }
    # the same requests benchmarked: the learned accuracy is within the DR estimate's interval
    observed = evaluate(router, test, catalogue)
    assert observed["estimator"] == "observed" and "off_policy" not in observed and observed["logged_requests"] == 0
    dr = off["learned"]["accuracy"]["dr"]
    assert dr["ci_low"] <= observed["accuracy"] <= dr["ci_high"]
    # the calibration is measured on the known outcomes only: one per logged request
    assert sum(b["count"] for b in report["calibration"]) == 100
    # ECE weighs each logged outcome by 1 / propensity (it stands for all traffic)
    from tierroute.pipelines.evaluation.metrics import ece

    proba, _ = router.predict_proba(logged_test.requests)
    rows, cols = np.arange(100), logged_test.logged
    expected = ece(proba[rows, cols], logged_test.correct[rows, cols], weight=1 / logged_test.propensity)
    assert report["ece"] == pytest.approx(expected)
    assert report["ece"] != pytest.approx(ece(proba[rows, cols], logged_test.correct[rows, cols]))


def test_partial_requests_that_are_not_logged_choices_are_left_out(fitted, logged_test: RoutingData) -> None:  # noqa: ANN001
    router, _, test = fitted
    unlogged = dataclasses.replace(logged_test, logged=np.where(np.arange(100) < 30, -1, logged_test.logged))
    report = evaluate(router, unlogged, builtin_catalogue("article"))
    assert report["requests"] == 70 and report["requests_left_out"] == 30 and report["logged_requests"] == 70


def test_a_mix_is_observed_plus_dr_with_the_oracle_on_the_benchmarked_requests(fitted, logged_test: RoutingData) -> None:  # noqa: ANN001
    from tierroute.pipelines.data.synthetic import production_log

    router, train, _ = fitted
    catalogue = builtin_catalogue("article")
    bench = train.subset(np.arange(40))
    config = SyntheticConfig(300, seed=5)
    # the first 40 requests benchmarked (3 rows each), the last 100 logged
    mixed = RoutingData.from_frame(_frame(list(generate(config))[:120] + list(production_log(config, epsilon=0.3, seed=2))[200:]))
    assert mixed.request_ids == bench.request_ids + logged_test.request_ids
    report = evaluate(router, mixed, catalogue)
    assert report["estimator"] == "observed + dr" and report["logged_requests"] == 100 and report["requests"] == 140
    assert report["off_policy"]["requests"] == 100
    oracle = report["baselines"]["oracle"]
    assert oracle["accuracy"] == pytest.approx(evaluate(router, bench, catalogue)["baselines"]["oracle"]["accuracy"])
    assert oracle["note"] == "benchmarked requests only (40): a logged request's oracle is unknown"


def test_reports_of_logged_data_leave_the_unknown_oracle_out(fitted, logged_test: RoutingData, tmp_path) -> None:  # noqa: ANN001
    import io

    from tierroute.cli.training import print_evaluation as _print_eval
    from tierroute.pipelines.evaluation.evaluate import write_report

    router, _, test = fitted
    report = evaluate(router, logged_test, builtin_catalogue("article"))
    written = write_report(report, tmp_path / "eval")
    assert {p.name for p in written} >= {"metrics.json", "report.md", "cost_quality.png"}
    md = (tmp_path / "eval" / "report.md").read_text(encoding="utf-8")
    assert "| oracle |" not in md and "| heuristic |" in md
    assert "100 logged requests judged by doubly-robust estimates: figures are dr" in md
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["baselines"]["oracle"]["accuracy"] is None
    out = io.StringIO()
    _print_eval(report, out)
    assert "oracle" not in out.getvalue() and "random" in out.getvalue()
    # a benchmarked report keeps its oracle row
    write_report(evaluate(router, test, builtin_catalogue("article")), tmp_path / "bench")
    assert "| oracle |" in (tmp_path / "bench" / "report.md").read_text(encoding="utf-8")


def test_a_run_id_with_mlflow_turned_off_is_refused_clearly(tmp_path):
    from tierroute.errors import ConfigError
    from tierroute.pipelines.evaluation.job import EvaluateConfig, run_evaluate

    with pytest.raises(ConfigError, match=r"is an MLflow run id, but --tracking-uri '' turns MLflow off"):
        run_evaluate(EvaluateConfig(model="0" * 32, data=("x.jsonl",), tracking_uri="", out_dir=str(tmp_path / "o")))
