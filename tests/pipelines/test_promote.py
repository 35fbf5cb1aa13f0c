"""The promotion gate (paired bootstrap against the champion and the heuristic, with tolerances)
and the registry mechanics: champion / previous_champion aliases, tags, rollback, exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tierroute.errors import ConfigError
from tierroute.models.catalogue import builtin_catalogue
from tierroute.pipelines.dataset import RoutingData
from tierroute.pipelines.promote import GateConfig, GateResult, gate
from tierroute.pipelines.synthetic import SyntheticConfig, generate

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
    with pytest.raises(ConfigError, match=r"^The gate needs held-out requests with every candidate's outcome; 10 have them"):
        small = data.subset(np.arange(10))
        gate(None, Fixed(small, np.zeros(10, dtype=int)), small, CATALOGUE)
    other = Fixed(data, _oracle(data))
    other.candidates_ = ("a", "b", "c")
    with pytest.raises(ConfigError, match=r"^The challenger routes between \['a', 'b', 'c'\] but the evaluation data has"):
        gate(None, other, data, CATALOGUE)
    with pytest.raises(ConfigError, match=r"^The 'quality_tolerance' parameter of GateConfig must be"):
        GateConfig(quality_tolerance=-1)


# -- the registry ----------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> dict[str, Any]:
    """One tiny training run registered twice (versions 1 and 2), plus held-out outcomes."""
    pytest.importorskip("mlflow")
    import mlflow

    from tierroute.models.router import RouterParams
    from tierroute.pipelines.synthetic import write_jsonl
    from tierroute.pipelines.train import TrainConfig, run_train

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = run_train(TrainConfig(synthetic_requests=200, encoder="none", out_dir=str(tmp_path / "run"), tracking_uri=uri,
                                   cache_dir=str(tmp_path / "cache"),
                                   router=RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1)))
    mlflow.set_tracking_uri(uri)
    mlflow.register_model(f"runs:/{result.run_id}/model", "tierroute")
    held_out = write_jsonl(SyntheticConfig(120, seed=99), tmp_path / "held_out.jsonl")
    return {"uri": uri, "data": str(held_out), "tmp": tmp_path}


def _versions(uri: str) -> dict[str, str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {alias: str(version) for alias, version in client.get_registered_model("tierroute").aliases.items()}


def test_promote_then_refuse_then_rollback(registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    from tierroute.cli import main
    import tierroute.pipelines.promote as promote_module

    uri, data = registry["uri"], registry["data"]
    args = ["--data", data, "--tracking-uri", uri]
    verdicts = iter([GateResult(True, ["no champion yet, and beats the heuristic"]),
                     GateResult(True, ["not worse than the champion within the tolerances, and beats the heuristic"]),
                     GateResult(False, ["less accurate than the champion beyond the tolerance: -0.1"])])
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


def test_rollback_without_a_previous_champion_is_one_error_line(registry: dict[str, Any],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tierroute.cli import main

    assert main(["rollback", "--tracking-uri", registry["uri"]], out=io.StringIO()) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: Registered model 'tierroute' has no 'previous_champion' alias at {registry['uri']}: nothing to roll back "
        "to. A rollback needs an earlier promotion.")


def test_a_registry_failure_is_not_read_as_no_champion() -> None:
    pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

    from tierroute.pipelines.promote import _alias

    class Down:
        def get_model_version_by_alias(self, name: str, alias: str) -> None:
            raise MlflowException("connection refused", error_code=INTERNAL_ERROR)

    class Missing:
        def get_model_version_by_alias(self, name: str, alias: str) -> None:
            raise MlflowException("no such alias", error_code=INVALID_PARAMETER_VALUE)

    assert _alias(Missing(), "tierroute", "champion") is None
    with pytest.raises(MlflowException, match="connection refused"):
        _alias(Down(), "tierroute", "champion")
