"""Off-policy estimators recover a known policy's value from simulated logs with a known logging
policy (epsilon-greedy, propensities logged), and refuse inputs they cannot use."""

from __future__ import annotations

import numpy as np
import pytest

from tierroute.errors import DataValidationError
from tierroute.pipelines.evaluation.offpolicy import doubly_robust, ips, snips

N, M, EPSILON = 40_000, 3, 0.3


def _simulate(seed: int = 0) -> dict[str, np.ndarray]:
    """Contexts x ~ U(0, 1); P(correct | x, a) known; the logger is epsilon-greedy around
    'always action 0'; the target sends x > 0.5 to action 2, the rest to action 1."""
    rng = np.random.default_rng(seed)
    x = rng.random(N)
    truth = np.column_stack([0.3 + 0.4 * x, 0.6 - 0.2 * x, 0.2 + 0.7 * x])  # P(correct) per action
    explore = rng.random(N) < EPSILON
    logged = np.where(explore, rng.integers(0, M, N), 0)
    propensity = np.where(logged == 0, 1 - EPSILON + EPSILON / M, EPSILON / M)
    reward = (rng.random(N) < truth[np.arange(N), logged]).astype(float)
    target = np.where(x > 0.5, 2, 1)
    value = float(truth[np.arange(N), target].mean())  # the target's true value on these contexts
    return {"x": x, "truth": truth, "logged": logged, "propensity": propensity, "reward": reward, "target": target, "value": value}


@pytest.fixture(scope="module")
def logs() -> dict[str, np.ndarray]:
    return _simulate()


def test_ips_and_snips_recover_the_target_value(logs: dict[str, np.ndarray]) -> None:
    naive = logs["reward"].mean()  # the logger's own value: far from the target's
    assert abs(naive - logs["value"]) > 0.05
    for estimate in (
        ips(logs["reward"], logs["logged"], logs["propensity"], logs["target"]),
        snips(logs["reward"], logs["logged"], logs["propensity"], logs["target"]),
    ):
        assert estimate.ci_low <= logs["value"] <= estimate.ci_high, estimate
        assert abs(estimate.value - logs["value"]) < 0.03
        assert estimate.n == N and 0 < estimate.matched < N


def test_doubly_robust_is_tight_with_a_good_model_and_unbiased_with_a_bad_one(logs: dict[str, np.ndarray]) -> None:
    args = (logs["reward"], logs["logged"], logs["propensity"], logs["target"])
    good = doubly_robust(*args, q_hat=logs["truth"])
    biased = doubly_robust(*args, q_hat=np.clip(logs["truth"] + 0.2, 0, 1))  # a wrong outcome model
    plain = ips(*args)
    assert good.estimator == "dr" and abs(good.value - logs["value"]) < 0.01
    assert good.ci_high - good.ci_low < 0.75 * (plain.ci_high - plain.ci_low)  # less variance than IPS
    assert biased.ci_low <= logs["value"] <= biased.ci_high  # the propensities correct the model's bias
    assert abs(biased.value - logs["value"]) < 0.03


def test_the_logging_policy_itself_is_recovered(logs: dict[str, np.ndarray]) -> None:
    # evaluating "always action 0" from logs mostly made by it: a sanity check of the weights
    est = ips(logs["reward"], logs["logged"], logs["propensity"], np.zeros(N, dtype=int))
    assert abs(est.value - logs["truth"][:, 0].mean()) < 0.02


@pytest.mark.parametrize(
    "change,message",
    [
        ({"propensity": [0.5, 0.0]}, r"^Propensities must be in \(0, 1\]; logged request 1 has 0\.0 \(1 such\)\. Log the serving "),
        ({"propensity": [0.5, 1.5]}, r"^Propensities must be in \(0, 1\]; logged request 1 has 1\.5"),
        ({"reward": [1.0, float("nan")]}, r"^Rewards must be finite; logged request 1 has nan\. Quarantine that row first\.$"),
        ({"reward": [1.0]}, r"^Off-policy estimates need four equal-length non-empty 1-D arrays; got rewards \(1,\), logged \(2,\)"),
    ],
)
def test_bad_inputs_are_refused(change: dict[str, list[float]], message: str) -> None:
    base = {"reward": [1.0, 0.0], "logged": [0, 1], "propensity": [0.5, 0.5], "target": [0, 1]}
    base.update(change)
    with pytest.raises(DataValidationError, match=message):
        ips(base["reward"], base["logged"], base["propensity"], base["target"])


def test_dr_checks_its_outcome_model_and_snips_needs_overlap() -> None:
    with pytest.raises(DataValidationError, match=r"^q_hat must be a finite \(n, m\) array with n = 2 logged requests; got shape \(3, 2\)"):
        doubly_robust([1, 0], [0, 1], [0.5, 0.5], [0, 1], np.zeros((3, 2)))
    with pytest.raises(
        DataValidationError,
        match=r"^With q_hat, 'target' actions must be column indices in \[0, 2\); "
        r"got values from 0 to 5",
    ):
        doubly_robust([1, 0], [0, 1], [0.5, 0.5], [0, 5], np.zeros((2, 2)))
    with pytest.raises(DataValidationError, match=r"^The target policy never agrees with the logged choices, so SNIPS"):
        snips([1, 0], [0, 0], [0.5, 0.5], [1, 1])


def test_policy_estimates_gives_every_estimator_for_every_policy(logs: dict[str, np.ndarray]) -> None:
    from tierroute.pipelines.evaluation.offpolicy import policy_estimates

    rng = np.random.default_rng(1)
    price = np.array([0.001, 0.01, 0.05])
    cost = price[logs["logged"]] * rng.uniform(0.5, 1.5, N)
    q_cost = np.tile(price * 1.5, (N, 1))
    picks = {"target": logs["target"], "always 2": np.full(N, 2)}
    out = policy_estimates(logs["reward"], cost, logs["logged"], logs["propensity"], picks, logs["truth"], q_cost)
    assert set(out) == {"target", "always 2"}
    for name, target in picks.items():
        assert set(out[name]) == {"accuracy", "cost_per_query"}
        for metric, reward, q in (("accuracy", logs["reward"], logs["truth"]), ("cost_per_query", cost, q_cost)):
            entry = out[name][metric]
            assert set(entry) == {"ips", "snips", "dr"}
            args = (reward, logs["logged"], logs["propensity"], target)
            assert entry["ips"] == ips(*args).to_dict()
            assert entry["snips"] == snips(*args).to_dict()
            assert entry["dr"] == doubly_robust(*args, q_hat=q).to_dict()
    assert out["target"]["accuracy"]["dr"]["value"] == pytest.approx(logs["value"], abs=0.01)
    assert out["always 2"]["cost_per_query"]["dr"]["value"] == pytest.approx(0.05, rel=0.05)  # q_cost is 1.5x off


def test_policy_estimates_leave_snips_out_with_the_reason_when_a_policy_never_agrees() -> None:
    from tierroute.pipelines.evaluation.offpolicy import policy_estimates

    out = policy_estimates(
        np.array([1.0, 0.0]),
        np.array([0.1, 0.2]),
        np.array([0, 0]),
        np.array([0.5, 0.5]),
        {"never": np.array([1, 1]), "always": np.array([0, 0])},
        np.full((2, 2), 0.5),
        np.full((2, 2), 0.3),
    )
    for metric in ("accuracy", "cost_per_query"):
        snip = out["never"][metric]["snips"]
        assert snip["value"] is None and snip["estimator"] == "snips"
        assert snip["reason"].startswith("The target policy never agrees with the logged choices, so SNIPS")
        assert out["never"][metric]["ips"]["value"] == 0.0 and out["never"][metric]["ips"]["matched"] == 0
    assert out["never"]["accuracy"]["dr"]["value"] == pytest.approx(0.5)  # the outcome model alone
    assert out["never"]["cost_per_query"]["dr"]["value"] == pytest.approx(0.3)
    assert out["always"]["accuracy"]["snips"]["value"] == pytest.approx(0.5)
    assert out["always"]["accuracy"]["ips"]["value"] == pytest.approx(1.0)  # (1 / 0.5 + 0) / 2
    assert out["always"]["cost_per_query"]["dr"]["value"] == pytest.approx(0.3 + ((0.1 - 0.3) + (0.2 - 0.3)) / 0.5 / 2)
    with pytest.raises(DataValidationError, match=r"^Rewards must be finite"):
        policy_estimates(
            np.array([np.nan, 0.0]),
            np.array([0.1, 0.2]),
            np.array([0, 0]),
            np.array([0.5, 0.5]),
            {"x": np.array([0, 0])},
            np.full((2, 2), 0.5),
            np.full((2, 2), 0.3),
        )
