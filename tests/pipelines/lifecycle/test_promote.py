"""The promotion gate (paired bootstrap against the champion and the heuristic, with tolerances)
and the registry mechanics: champion / previous_champion aliases, tags, rollback, exit codes."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tierroute.errors import ConfigError
from tierroute.models.catalogue import builtin_catalogue
from tierroute.models.learned import LearnedConfig
from tierroute.pipelines.data.dataset import RoutingData
from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
from tierroute.pipelines.lifecycle.promote import GateConfig, GateResult, gate

CATALOGUE = builtin_catalogue("article")


@pytest.fixture(scope="module")
def data() -> RoutingData:
    frame = pd.DataFrame(list(generate(SyntheticConfig(600, seed=11))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    return RoutingData.from_frame(frame).complete()


class Fixed:
    """A stand-in router that makes fixed choices (the gate only needs candidates_ and decide)."""

    def __init__(self, data: RoutingData, picks: np.ndarray) -> None:
        self.candidates_ = data.candidates
        self.picks = picks

    def decide(self, requests: Any) -> np.ndarray:
        return self.picks


def _oracle(d: RoutingData) -> np.ndarray:
    """The cheapest correct candidate (the dearest when none is): the best a router can do."""
    cost = np.where(d.correct > 0, d.cost, np.inf)
    return np.where(np.isfinite(cost).any(axis=1), cost.argmin(axis=1), d.cost.argmax(axis=1))


def _always(d: RoutingData, model: str) -> np.ndarray:
    return np.full(d.n_requests, d.candidates.index(model))


def test_a_first_challenger_needs_only_to_beat_the_heuristic(data: RoutingData) -> None:
    result = gate(None, Fixed(data, _oracle(data)), data, CATALOGUE)
    assert result.promote and result.reasons == ["no champion yet, and beats the heuristic"]
    assert result.figures["vs_heuristic"]["accuracy_diff_low"] > 0 and "vs_champion" not in result.figures


def test_a_less_accurate_challenger_is_refused_and_says_why(data: RoutingData) -> None:
    result = gate(Fixed(data, _oracle(data)), Fixed(data, _always(data, "claude-3-haiku")), data, CATALOGUE)
    assert not result.promote
    assert any(r.startswith("less accurate than the champion beyond the tolerance: -") for r in result.reasons)
    assert any(r.startswith("does not beat the heuristic: accuracy ") for r in result.reasons)


def test_a_costlier_challenger_is_refused(data: RoutingData) -> None:
    result = gate(Fixed(data, _oracle(data)), Fixed(data, _always(data, "gpt-4o")), data, CATALOGUE)
    assert not result.promote
    assert any(r.startswith("costlier per correct answer than the champion beyond the tolerance: x") for r in result.reasons)


def test_an_equal_challenger_passes_and_the_tolerance_matters(data: RoutingData) -> None:
    picks = _oracle(data)
    same = gate(Fixed(data, picks), Fixed(data, picks.copy()), data, CATALOGUE)
    assert same.promote and same.reasons == ["not worse than the champion within the tolerances, and beats the heuristic"]
    assert same.figures["vs_champion"]["accuracy_diff"] == 0.0
    worse = picks.copy()
    wrong = np.flatnonzero(data.correct[np.arange(data.n_requests), picks] > 0)[:12]  # 12 of 600 turned wrong: -2 pts
    worse[wrong] = [int(np.argmin(data.correct[i])) for i in wrong]
    strict = gate(Fixed(data, picks), Fixed(data, worse), data, CATALOGUE, GateConfig(quality_tolerance=0.0))
    lenient = gate(Fixed(data, picks), Fixed(data, worse), data, CATALOGUE, GateConfig(quality_tolerance=0.1, cost_tolerance=1.0))
    assert not strict.promote and lenient.promote


def test_gate_refusals(data: RoutingData) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^The gate needs held-out requests with every candidate's outcome "
        r"or a logged choice with its propensity; 10 have them",
    ):
        small = data.subset(np.arange(10))
        gate(None, Fixed(small, np.zeros(10, dtype=int)), small, CATALOGUE)
    other = Fixed(data, _oracle(data))
    other.candidates_ = ("a", "b", "c")
    with pytest.raises(ConfigError, match=r"^The challenger routes between \['a', 'b', 'c'\] but the evaluation data has"):
        gate(None, other, data, CATALOGUE)
    with pytest.raises(ConfigError, match=r"^The 'quality_tolerance' parameter of GateConfig must be"):
        GateConfig(quality_tolerance=-1)
    with pytest.raises(
        ConfigError,
        match=r"^The 'flip_tolerance' parameter of GateConfig must be a finite number in the "
        r"range \[0, 1\]\. Got 2 instead\.$",
    ):
        GateConfig(flip_tolerance=2)


# -- decision stability --------------------------------------------------------------------------


class Jumpy(Fixed):
    """Fixed choices, except that every ``every``-th request whose prompt was perturbed (it differs
    from the gate data's at the same position: the gate perturbs all its requests, in order, when
    they are at most ``stability_requests``) goes to the next candidate: a flip rate of ~1/every."""

    def __init__(self, data: RoutingData, picks: np.ndarray, every: int) -> None:
        super().__init__(data, picks)
        self.prompts, self.every = [r.prompt for r in data.requests], every

    def decide(self, requests: Any) -> np.ndarray:
        out = self.picks.copy()
        moved = [i for i, r in enumerate(requests) if r.prompt != self.prompts[i]]
        for i in moved[:: self.every]:
            out[i] = (out[i] + 1) % len(self.candidates_)
        return out


def test_a_challenger_that_flips_more_than_the_champion_is_refused(data: RoutingData) -> None:
    picks = _oracle(data)
    result = gate(Fixed(data, picks), Jumpy(data, picks.copy(), 4), data, CATALOGUE)
    assert not result.promote
    stability = result.figures["stability"]
    assert stability["champion"] == 0.0 and stability["challenger"] == pytest.approx(0.25, abs=0.02)
    assert stability["source"] == "measured" and stability["requests"] == data.n_requests
    [reason] = [r for r in result.reasons if r.startswith("less stable")]
    assert re.fullmatch(
        r"less stable than the champion beyond the tolerance: flip rate under meaning-preserving prompt "
        r"perturbations 0\.2\d\d vs the champion's 0\.000 \(\+0\.2\d\d, at most \+0\.050 allowed\)",
        reason,
    )


def test_a_flip_rate_within_the_tolerance_passes(data: RoutingData) -> None:
    picks = _oracle(data)
    champion, challenger = Jumpy(data, picks, 10), Jumpy(data, picks.copy(), 8)  # ~0.10 vs ~0.125: within 0.05
    result = gate(champion, challenger, data, CATALOGUE)
    assert result.promote and result.reasons == ["not worse than the champion within the tolerances, and beats the heuristic"]
    assert 0 < result.figures["stability"]["challenger"] - result.figures["stability"]["champion"] <= 0.05
    assert not gate(champion, challenger, data, CATALOGUE, GateConfig(flip_tolerance=0.0)).promote
    off = gate(Fixed(data, picks), Jumpy(data, picks.copy(), 2), data, CATALOGUE, GateConfig(flip_tolerance=None))
    assert off.promote and "stability" not in off.figures


def test_a_champion_without_a_flip_rate_skips_the_check_and_says_so(data: RoutingData) -> None:
    picks = _oracle(data)
    result = gate(Fixed(data, picks), Fixed(data, picks.copy()), data, CATALOGUE, flip_rates={"challenger": 0.3, "champion": None})
    assert result.promote
    assert result.reasons == [
        "not worse than the champion within the tolerances, and beats the heuristic",
        "stability check skipped: the champion has no flip-rate figure (a model from before decision "
        "stability was measured); the challenger's flip rate is 0.300",
    ]
    assert result.figures["stability"] == {"challenger": 0.3, "champion": None, "source": "given", "tolerance": 0.05}
    refused = gate(Fixed(data, picks), Fixed(data, picks.copy()), data, CATALOGUE, flip_rates={"challenger": 0.3, "champion": 0.1})
    assert not refused.promote and refused.reasons[0].startswith("less stable than the champion beyond the tolerance: ")


# -- the registry ----------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> dict[str, Any]:
    """One tiny training run registered twice (versions 1 and 2), plus held-out outcomes."""
    pytest.importorskip("mlflow")
    import mlflow

    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.synthetic import write_jsonl
    from tierroute.pipelines.training.train import TrainConfig, run_train

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = run_train(
        TrainConfig(
            synthetic_requests=200,
            encoder="none",
            out_dir=str(tmp_path / "run"),
            tracking_uri=uri,
            cache_dir=str(tmp_path / "cache"),
            learned=LearnedConfig(router=RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1)),
        )
    )
    mlflow.set_tracking_uri(uri)
    mlflow.register_model(f"runs:/{result.run_id}/model", "tierroute")
    held_out = write_jsonl(SyntheticConfig(120, seed=99), tmp_path / "held_out.jsonl")
    return {"uri": uri, "data": str(held_out), "tmp": tmp_path}


def _versions(uri: str) -> dict[str, str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {alias: str(version) for alias, version in client.get_registered_model("tierroute").aliases.items()}


def test_promote_then_refuse_then_rollback(
    registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    import tierroute.pipelines.lifecycle.promote as promote_module
    from tierroute.cli import main

    uri, data = registry["uri"], registry["data"]
    args = ["--data", data, "--tracking-uri", uri]
    verdicts = iter(
        [
            GateResult(True, ["no champion yet, and beats the heuristic"]),
            GateResult(True, ["not worse than the champion within the tolerances, and beats the heuristic"]),
            GateResult(False, ["less accurate than the champion beyond the tolerance: -0.1"]),
        ]
    )
    seen: list[Any] = []

    def fake_gate(champion: Any, challenger: Any, data_: Any, catalogue: Any, config: Any) -> GateResult:
        seen.append((champion is None, data_.n_requests))
        return next(verdicts)

    monkeypatch.setattr(promote_module, "gate", fake_gate)
    out = io.StringIO()
    assert main(["promote", "--version", "1", *args, "--json", "--out", str(registry["tmp"] / "p1")], out=out) == 0
    report = json.loads(out.getvalue())
    assert report["promote"] and report["figures"]["challenger_version"] == "1" and report["figures"]["champion_version"] is None
    assert json.loads((registry["tmp"] / "p1" / "gate.json").read_text(encoding="utf-8"))["promote"] is True
    assert _versions(uri) == {"champion": "1"}
    assert main(["promote", "--version", "2", *args], out=io.StringIO()) == 0
    assert _versions(uri) == {"champion": "2", "previous_champion": "1"}
    assert main(["promote", "--version", "1", *args], out=(text := io.StringIO())) == 3  # refused: exit 3
    assert text.getvalue().startswith("version 1: refused; the champion stays\n  - less accurate than the champion")
    assert _versions(uri) == {"champion": "2", "previous_champion": "1"}
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags = client.get_model_version("tierroute", "1").tags
    assert tags["gate.promote"] == "false" and "less accurate" in json.loads(tags["gate.reasons"])[0]
    assert seen[0] == (True, 120) and seen[1][0] is False  # the second gate had a champion to beat
    assert main(["rollback", "--tracking-uri", uri, "--json"], out=(rolled := io.StringIO())) == 0
    assert json.loads(rolled.getvalue()) == {"schema_version": 1, "champion": "1", "previous_champion": "2"}
    assert _versions(uri) == {"champion": "1", "previous_champion": "2"}
    assert main(["rollback", "--tracking-uri", uri], out=io.StringIO()) == 1  # a second rollback would undo the first
    assert "which a rollback already demoted; rolling back again would undo that rollback" in capsys.readouterr().err
    assert _versions(uri) == {"champion": "1", "previous_champion": "2"}
    assert main(["promote", "--version", "1", *args], out=io.StringIO()) == 1
    assert capsys.readouterr().err.strip().endswith("Version 1 of 'tierroute' is already the champion; nothing to promote.")


def test_rollback_without_a_previous_champion_is_one_error_line(registry: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from tierroute.cli import main

    assert main(["rollback", "--tracking-uri", registry["uri"]], out=io.StringIO()) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: Registered model 'tierroute' has no 'previous_champion' alias at {registry['uri']}: nothing to roll back "
        "to. A rollback needs an earlier promotion."
    )


def test_a_registry_failure_is_not_read_as_no_champion() -> None:
    pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

    from tierroute.pipelines.lifecycle.promote import alias_version

    class Down:
        def get_model_version_by_alias(self, name: str, alias: str) -> None:
            raise MlflowException("connection refused", error_code=INTERNAL_ERROR)

    class Missing:
        def get_model_version_by_alias(self, name: str, alias: str) -> None:
            raise MlflowException("no such alias", error_code=INVALID_PARAMETER_VALUE)

    assert alias_version(Missing(), "tierroute", "champion") is None
    with pytest.raises(MlflowException, match="connection refused"):
        alias_version(Down(), "tierroute", "champion")


# -- logged held-out requests (the chosen model's outcome and its propensity) ----------------------


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    return frame


@pytest.fixture(scope="module")
def routers() -> dict[str, Any]:
    """Two small learned routers (challenger and champion) trained on other requests."""
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams

    config = LearnedConfig(encoder="none", router=RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1))
    first = RoutingData.from_frame(_frame(list(generate(SyntheticConfig(300, seed=5)))))
    second = RoutingData.from_frame(_frame(list(generate(SyntheticConfig(200, seed=6)))))
    return {"challenger": LearnedRouter(config).fit(first, CATALOGUE), "champion": LearnedRouter(config).fit(second, CATALOGUE)}


@pytest.fixture(scope="module")
def logged() -> RoutingData:
    """The `data` fixture's 600 requests as a production log of the tree with 30% exploration."""
    from tierroute.pipelines.data.synthetic import production_log

    return RoutingData.from_frame(_frame(list(production_log(SyntheticConfig(600, seed=11), epsilon=0.3, seed=3))))


def test_the_gate_judges_logged_requests_by_doubly_robust_estimates(
    routers: dict[str, Any], logged: RoutingData, data: RoutingData
) -> None:
    challenger = routers["challenger"]
    assert logged.logged_only.all() and logged.request_ids == data.request_ids
    result = gate(None, challenger, logged, CATALOGUE)
    f = result.figures
    assert f["estimator"] == "dr" and f["logged_requests"] == 600 and f["requests"] == 600
    off = f["off_policy"]
    assert set(off) == {"requests", "challenger", "heuristic"} and off["requests"] == 600
    for name in ("challenger", "heuristic"):
        for metric in ("accuracy", "cost_per_query"):
            assert set(off[name][metric]) == {"ips", "snips", "dr"}
    # the gate's figures are the mean pseudo-outcomes: the DR estimates
    assert f["challenger"]["accuracy"] == pytest.approx(off["challenger"]["accuracy"]["dr"]["value"])
    assert f["heuristic"]["accuracy"] == pytest.approx(off["heuristic"]["accuracy"]["dr"]["value"])
    # the same requests benchmarked (same seed: identical requests and outcomes) are observed
    observed = gate(None, challenger, data, CATALOGUE).figures
    assert observed["estimator"] == "observed" and observed["logged_requests"] == 0 and "off_policy" not in observed
    dr = off["challenger"]["accuracy"]["dr"]
    # near the observed figure (the normal-approximation interval can be too narrow when few logged
    # choices match the challenger's; see tests/pipelines/training/test_train.py)
    assert abs(dr["value"] - observed["challenger"]["accuracy"]) < 0.05
    assert f["heuristic"]["accuracy"] == pytest.approx(observed["heuristic"]["accuracy"], abs=0.04)


def test_the_gate_on_logged_requests_with_a_champion_averages_both_outcome_models(routers: dict[str, Any], logged: RoutingData) -> None:
    challenger, champion = routers["challenger"], routers["champion"]
    f = gate(champion, challenger, logged, CATALOGUE).figures
    off = f["off_policy"]
    assert set(off) == {"requests", "challenger", "champion", "heuristic"}
    assert f["champion"]["accuracy"] == pytest.approx(off["champion"]["accuracy"]["dr"]["value"])
    # the outcome model is the two routers' P(correct) averaged
    q = (challenger.predict_proba(logged.requests)[0] + champion.predict_proba(logged.requests)[0]) / 2
    judged = logged.with_estimates(q, np.zeros_like(q))
    picks = challenger.decide(logged.requests)
    assert f["challenger"]["accuracy"] == pytest.approx(judged.correct[np.arange(600), picks].mean())
    assert "vs_champion" in f and "accuracy_diff" in f["vs_champion"]


def test_the_gate_on_a_mix_of_benchmarked_and_logged_requests(routers: dict[str, Any], logged: RoutingData) -> None:
    from tierroute.pipelines.data.synthetic import production_log

    mixed_rows = list(generate(SyntheticConfig(40, seed=12))) + list(production_log(SyntheticConfig(30, seed=13), epsilon=0.5))
    mixed = RoutingData.from_frame(_frame(mixed_rows))
    f = gate(None, routers["challenger"], mixed, CATALOGUE).figures
    assert f["estimator"] == "observed + dr" and f["logged_requests"] == 30 and f["requests"] == 70
    assert f["off_policy"]["requests"] == 30
    # partial requests that are not logged choices are left out, and too few usable ones refused
    partial = dataclasses.replace(logged, logged=np.full(600, -1))
    with pytest.raises(
        ConfigError,
        match=r"^The gate needs held-out requests with every candidate's outcome or a logged "
        r"choice with its propensity; 0 have them",
    ):
        gate(None, routers["challenger"], partial, CATALOGUE)
