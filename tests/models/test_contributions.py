"""Per-feature contributions from the bundle's tree table (numpy only): they sum to LightGBM's raw
score, the fast per-candidate path equals the whole-row one (NaN, categorical candidate column,
16- and 64-bit leaf sets), the table round-trips byte for byte, and Saabas against LightGBM's exact
TreeSHAP (``pred_contrib=True``) on the synthetic workload: the same bias, and the agreement
figures printed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

from tierroute.models.contributions import (  # noqa: E402
    CANDIDATE_GROUP,
    CONTENT_GROUP,
    CandidateExplainer,
    TreeExplainer,
    feature_groups,
    split_tables,
    tree_table,
    tree_tables,
)


def booster(
    n: int = 1500, d: int = 10, leaves: int = 15, rounds: int = 120, seed: int = 0, categorical: bool = True
) -> tuple[object, np.ndarray]:
    """A binary booster on rows whose last column is a candidate index (0..2; categorical unless
    told) and whose column 4 is often NaN (a missing SLA)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[:, -1] = rng.integers(0, 3, n)
    X[rng.random(n) < 0.2, 4] = np.nan
    logit = X[:, 0] - 0.5 * np.nan_to_num(X[:, 4], nan=1.0) + (X[:, -1] == 1) + 0.5 * X[:, 1] * X[:, 2]
    y = (logit + rng.standard_normal(n) > 0.3).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "min_data_in_leaf": 5,
        "learning_rate": 0.1,
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
    }
    return lgb.train(params, lgb.Dataset(X, y, categorical_feature=[d - 1] if categorical else "auto"), rounds), X


def test_contributions_sum_to_the_raw_score() -> None:
    model, X = booster()
    explainer = TreeExplainer(tree_table(model), np.arange(X.shape[1]), X.shape[1])
    raw = model.predict(X, raw_score=True)
    contributions = explainer.contributions(X)
    assert np.abs(contributions.sum(axis=1) + explainer.bias - raw).max() < 1e-5
    assert np.abs(explainer.raw(X) - raw).max() < 1e-9  # the same leaves as LightGBM, NaN and categories included
    # the bias is TreeSHAP's expected value (the training-count-weighted mean of the trees' leaves)
    assert np.abs(model.predict(X[:5], pred_contrib=True)[:, -1] - explainer.bias).max() < 1e-9


@pytest.mark.parametrize("leaves", [15, 40])  # 16-bit leaf sets with a lookup table; 64-bit sets
def test_the_candidate_path_equals_whole_rows(leaves: int) -> None:
    model, X = booster(leaves=leaves, rounds=60)
    d = X.shape[1] - 1
    explainer = TreeExplainer(tree_table(model), np.arange(d + 1), d + 1)
    fast = CandidateExplainer([(explainer, np.array([float(j)])) for j in range(3)], d)
    for row in X[:40, :d]:
        whole = np.array([np.r_[row, j] for j in range(3)], dtype=np.float32)
        shares, margins = fast.explain(row, [2, 0, 1])
        np.testing.assert_allclose(shares, explainer.contributions(whole[[2, 0, 1]]), atol=1e-9)
        np.testing.assert_allclose(margins, model.predict(whole[[2, 0, 1]], raw_score=True), atol=1e-9)
        np.testing.assert_allclose(shares.sum(axis=1) + fast.bias[0], margins, atol=1e-9)


def test_per_candidate_boosters_share_one_joint_table() -> None:
    (a, X), (b, _) = booster(rounds=40, seed=1, categorical=False), booster(rounds=25, seed=2, categorical=False)
    ea, eb = (TreeExplainer(tree_table(m), np.arange(X.shape[1]), X.shape[1]) for m in (a, b))
    fast = CandidateExplainer([(ea, None), (eb, None)], X.shape[1])
    with pytest.raises(ValueError, match="split on column"):  # rows one column short of what the trees read
        CandidateExplainer([(ea, None)], X.shape[1] - 1)
    shares, margins = fast.explain(X[3], [1, 0])
    np.testing.assert_allclose(margins, [b.predict(X[3:4], raw_score=True)[0], a.predict(X[3:4], raw_score=True)[0]], atol=1e-9)
    np.testing.assert_allclose(shares.sum(axis=1) + [fast.bias[1], fast.bias[0]], margins, atol=1e-9)


def test_the_table_round_trips_and_saves_reproducibly() -> None:
    (a, X), (b, _) = booster(rounds=20, seed=1), booster(rounds=30, seed=2)
    records = tree_tables([a, b])
    saved = []
    for _ in range(2):
        buffer = io.BytesIO()
        np.save(buffer, records, allow_pickle=False)
        saved.append(buffer.getvalue())
    assert saved[0] == saved[1]  # the bundle id depends on the bytes
    back = split_tables(np.load(io.BytesIO(saved[0]), allow_pickle=False))
    assert len(back) == 2
    for model, table in zip((a, b), back):
        explainer = TreeExplainer(table, np.arange(X.shape[1]), X.shape[1])
        assert np.abs(explainer.raw(X) - model.predict(X, raw_score=True)).max() < 1e-9
    with pytest.raises(ValueError, match="expected a 1-d array"):
        split_tables(np.zeros(3))


def test_trees_beyond_64_leaves_are_refused_clearly() -> None:
    model, X = booster(leaves=80, rounds=3, n=3000)
    explainer = TreeExplainer(tree_table(model), np.arange(X.shape[1]), X.shape[1])
    assert np.abs(explainer.raw(X) - model.predict(X, raw_score=True)).max() < 1e-9  # the level-stepping path has no limit
    with pytest.raises(ValueError, match="at most 64"):
        CandidateExplainer([(explainer, np.array([0.0]))], X.shape[1] - 1)


def test_feature_groups() -> None:
    groups, index = feature_groups(["n_tokens", "depth_score", "emb_0", "emb_1", "emb_2"], extra=3)
    assert groups == ("n_tokens", "depth_score", CONTENT_GROUP, CANDIDATE_GROUP)
    assert index.tolist() == [0, 1, 2, 2, 2, 3, 3, 3]


def test_saabas_agrees_with_treeshap_on_the_synthetic_workload() -> None:
    """The pooled router of the synthetic workload (its real features and candidate columns):
    Saabas by feature group against LightGBM's exact TreeSHAP summed over the same groups."""
    pytest.importorskip("sklearn")
    import pandas as pd

    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
    from tierroute.pipelines.evaluation.importance import saabas_agreement

    frame = pd.DataFrame(list(generate(SyntheticConfig(400, seed=3))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    params = RouterParams(n_estimators=150, n_folds=2, early_stopping_rounds=20, n_threads=1)
    router = LearnedRouter(LearnedConfig(encoder="none", router=params)).fit(data.subset(np.arange(300)), builtin_catalogue("article"))
    figures = saabas_agreement(router, list(data.subset(np.arange(300, 400)).requests))
    print("\nSaabas vs TreeSHAP (synthetic workload, pooled): " + json.dumps(figures))
    assert figures["max_sum_error"] < 1e-5 and figures["max_bias_error"] < 1e-9
    assert figures["pearson"] > 0.9 and figures["top_group_agreement"] > 0.7
