"""tierroute retrain: the champion's settings, new logs joined with the previous data, held-out
new requests for the gate, a registered challenger, and the same model for the same inputs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow")

from tierroute.errors import ConfigError  # noqa: E402
from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl  # noqa: E402
from tierroute.pipelines.lifecycle.retrain import RetrainConfig, run_retrain  # noqa: E402


@pytest.fixture
def champion(tmp_path: Path) -> dict[str, Any]:
    import mlflow

    from tierroute.models.learned import LearnedConfig
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training.train import TrainConfig, run_train

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
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
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias("tierroute", "champion", "1")
    new = write_jsonl(SyntheticConfig(120, seed=2), tmp_path / "week2.jsonl")
    return {"uri": uri, "first": first, "new": new, "tmp": tmp_path}


def test_retrain_trains_with_the_champion_s_settings_and_gates_on_held_out_new_requests(champion: dict[str, Any]) -> None:
    tmp = champion["tmp"]
    result = run_retrain(RetrainConfig(logs=(str(champion["new"]),), tracking_uri=champion["uri"], out_dir=str(tmp / "r1")))
    assert result.version == "2" and result.gate.figures["champion_version"] == "1"
    assert result.gate.figures["challenger_version"] == "2" and result.gate.reasons
    # the previous data defaults to the champion's own training file (still on disk)
    assert result.rows["previous"] > 0 and 25 <= result.rows["held_out_requests"] <= 35
    held = {json.loads(line)["request_id"] for line in (tmp / "r1" / "data" / "holdout.jsonl").read_text().splitlines()}
    trained = {
        json.loads(line)["request_id"]
        for name in ("train-new.jsonl", "train-previous.jsonl")
        for line in (tmp / "r1" / "data" / name).read_text().splitlines()
    }
    assert held and not held & trained  # held-out requests are never trained on
    summary = json.loads((tmp / "r1" / "retrain.json").read_text(encoding="utf-8"))
    assert summary["version"] == "2" and summary["promoted"] == result.gate.promote
    manifest = json.loads((tmp / "r1" / "train" / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["training"]["config"]["router"]["n_estimators"] == 20  # the champion's settings
    # same inputs, same seed: the same model (this time through the CLI; exit 0 promoted, 3 refused)
    from tierroute.cli import main

    out = io.StringIO()
    code = main(["retrain", "--logs", str(champion["new"]), "--tracking-uri", champion["uri"], "--out", str(tmp / "r2"), "--json"], out=out)
    again = json.loads(out.getvalue())
    assert code == (0 if again["promoted"] else 3) and again["version"] == "3"
    second = json.loads((tmp / "r2" / "train" / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert second["bundle_id"] == manifest["bundle_id"]


def test_only_new_logs_and_a_window(champion: dict[str, Any]) -> None:
    tmp = champion["tmp"]
    result = run_retrain(
        RetrainConfig(logs=(str(champion["new"]),), previous=(), tracking_uri=champion["uri"], out_dir=str(tmp / "only-new"))
    )
    assert result.rows["previous"] == 0 and result.rows["train"] == result.rows["new"] - 3 * result.rows["held_out_requests"]
    windowed = run_retrain(
        RetrainConfig(logs=(str(champion["new"]),), window_days=1, tracking_uri=champion["uri"], out_dir=str(tmp / "window"))
    )
    assert windowed.rows["previous"] == 0  # the synthetic rows are stamped 2026-01-01: outside a one-day window


def test_retrain_needs_a_champion_and_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tierroute.cli import main

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(ConfigError, match=r"^There is no champion at .* to retrain from\. Train a router"):
        run_retrain(RetrainConfig(logs=("x.jsonl",), tracking_uri=uri))
    with pytest.raises(ConfigError, match=r"^The 'logs' parameter of RetrainConfig needs at least one outcome log"):
        RetrainConfig(logs=())
    capsys.readouterr()
    assert main(["retrain", "--logs", "x.jsonl", "--tracking-uri", uri], out=io.StringIO()) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: There is no champion at ")


def test_retrain_on_production_logs_with_a_previous_weight(champion: dict[str, Any]) -> None:
    """New logs hold only the chosen model's outcome with its propensity (the tree with 30%
    exploration); the champion was trained on a benchmark file. Through the CLI, text output."""
    import mlflow

    from tierroute.cli import main
    from tierroute.pipelines.data.synthetic import production_log

    tmp, uri = champion["tmp"], champion["uri"]
    logs = tmp / "week2-log.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in production_log(SyntheticConfig(200, seed=2), epsilon=0.3)), encoding="utf-8")
    out = io.StringIO()
    code = main(["retrain", "--logs", str(logs), "--previous-weight", "0.5", "--tracking-uri", uri, "--out", str(tmp / "r")], out=out)
    summary = json.loads((tmp / "r" / "retrain.json").read_text(encoding="utf-8"))
    assert code == (0 if summary["promoted"] else 3)
    rows, figures = summary["rows"], summary["gate"]
    assert rows["logged_new_requests"] == 200 == rows["new"] and rows["previous"] == 480
    assert figures["estimator"] == "dr" and figures["logged_requests"] == rows["held_out_requests"] >= 20
    assert set(figures["off_policy"]) == {"requests", "challenger", "champion", "heuristic"}
    # the new logs train with their propensities beside the previous (benchmark) rows, which count 0.5
    new_rows = [json.loads(line) for line in (tmp / "r" / "data" / "train-new.jsonl").read_text().splitlines()]
    assert new_rows and all(r["chosen"] is True and r["propensity"] in (0.8, 0.1) for r in new_rows)
    assert len(new_rows) == 200 - rows["held_out_requests"]
    train_json = json.loads((tmp / "r" / "train" / "train.json").read_text(encoding="utf-8"))
    assert train_json["config"]["data_weights"] == [1.0, 0.5]
    assert [Path(p).name for p in train_json["config"]["data"]] == ["train-new.jsonl", "train-previous.jsonl"]
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(summary["run_id"])
    assert run.data.params["config.data_weights"] == "[1.0, 0.5]"
    # the challenger's evaluation is on logged held-out requests: no oracle, so none is logged
    assert "oracle.accuracy" not in run.data.metrics and "heuristic.accuracy" in run.data.metrics
    text = out.getvalue()
    assert f"  held-out figures are dr estimates ({figures['logged_requests']} logged requests):\n" in text
    for name in ("challenger", "champion", "heuristic"):
        dr = figures["off_policy"][name]["accuracy"]["dr"]
        assert f"    {name:<11} accuracy dr {dr['value']:.4f} [{dr['ci_low']:.4f}, {dr['ci_high']:.4f}]  ips " in text
    assert "cost/query dr " in text


def test_previous_weight_is_checked() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^The 'previous_weight' parameter of RetrainConfig "
        r"must be a finite number in the range \[1e-06, inf\)",
    ):
        RetrainConfig(logs=("x.jsonl",), previous_weight=0.0)
    assert RetrainConfig(logs=("x.jsonl",)).previous_weight == 1.0


def _serve_privately(champion: dict[str, Any], n: int, spec: str | None = None) -> tuple[Path, Path]:
    """``n`` new requests routed by the champion's bundle in privacy mode (a DecisionLog with
    log_features, no prompts; 30% exploration), each judged in a FeedbackLog by its synthetic outcome.
    ``spec`` overwrites the logged FeatureSpec fingerprint (a log from another bundle)."""
    from tierroute.pipelines.data.synthetic import generate
    from tierroute.serving import Router, RouterConfig
    from tierroute.serving.decision_log import DecisionLog
    from tierroute.serving.feedback import FeedbackLog

    tmp = champion["tmp"]
    rows = list(generate(SyntheticConfig(n, seed=7)))
    outcome = {(r["request_id"], r["model"]): r["correct"] for r in rows}
    firsts = list({r["request_id"]: r for r in rows}.values())
    decisions, feedback = tmp / "private-decisions.jsonl", tmp / "private-feedback.jsonl"
    with DecisionLog(decisions, log_features=True) as log, FeedbackLog(feedback) as judged:
        router = Router.load(tmp / "run1" / "bundle", RouterConfig(deadline_ms=None, epsilon=0.3, seed=0), strict=True, decision_log=log)
        for r in firsts:
            chosen = router.route(
                {"prompt": r["prompt"], "output_schema": r["output_schema"], "latency_sla_ms": r["latency_sla_ms"], "id": r["request_id"]}
            ).model
            judged.record(request_id=r["request_id"], correct=outcome[(r["request_id"], chosen)])
    if spec is not None:
        lines = [json.loads(line) for line in decisions.read_text(encoding="utf-8").splitlines()]
        decisions.write_text("".join(json.dumps({**d, "feature_spec": spec}) + "\n" for d in lines), encoding="utf-8")
    return decisions, feedback


def test_retrain_on_feature_only_logs_trains_without_any_prompt_text(champion: dict[str, Any]) -> None:
    """Privacy mode end to end: decisions logged with their feature vectors (no text), feedback,
    `tierroute outcomes`, then `tierroute retrain --decisions --feedback`, beside the champion's
    own (prompt-bearing) training file: mixed text and feature-only rows."""
    from tierroute.cli import main

    tmp, uri = champion["tmp"], champion["uri"]
    decisions, feedback = _serve_privately(champion, 100)
    assert all("prompt" not in json.loads(line) for line in decisions.read_text(encoding="utf-8").splitlines())
    out = io.StringIO()
    assert (
        main(["outcomes", "--decisions", str(decisions), "--feedback", str(feedback), "--out", str(tmp / "o.jsonl"), "--json"], out=out)
        == 0
    )
    report = json.loads(out.getvalue())
    assert report["rows"] == report["feature_rows"] == 100 and report["excluded"] == {}
    joined = [json.loads(line) for line in (tmp / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    manifest = json.loads((tmp / "run1" / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    fingerprint = manifest["feature_spec_fingerprint"]
    assert all(
        r["prompt"] is None
        and r["feature_spec"] == fingerprint
        and r["chosen"] is True
        and 0 < r["propensity"] <= 1
        and len(r["features"]) == len(manifest["feature_spec"]["names"])
        for r in joined
    )
    code = main(
        [
            "retrain",
            "--decisions",
            str(decisions),
            "--feedback",
            str(feedback),
            "--tracking-uri",
            uri,
            "--out",
            str(tmp / "private"),
            "--json",
        ],
        out=(printed := io.StringIO()),
    )
    summary = json.loads(printed.getvalue())
    assert code == (0 if summary["promoted"] else 3) and summary["version"] == "2"
    assert summary["rows"]["feature_rows"] == 100 == summary["rows"]["new"] and summary["rows"]["previous"] > 0
    trained = [json.loads(line) for line in (tmp / "private" / "data" / "train-new.jsonl").read_text().splitlines()]
    assert trained and all(r["prompt"] is None and r["features"] for r in trained)
    challenger = json.loads((tmp / "private" / "train" / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert challenger["feature_spec_fingerprint"] == fingerprint  # trained under the spec the vectors were logged with
    assert summary["gate"]["logged_requests"] == summary["rows"]["held_out_requests"] > 0


def test_retrain_refuses_feature_vectors_logged_under_another_spec(champion: dict[str, Any]) -> None:
    from tierroute.errors import FeatureError

    decisions, feedback = _serve_privately(champion, 12, spec="0" * 64)
    manifest = json.loads((champion["tmp"] / "run1" / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    expected = (
        f"12 feature-only request(s) were logged under FeatureSpec {'0' * 64}, but the champion reads FeatureSpec "
        f"{manifest['feature_spec_fingerprint']}: the logged vectors do not mean the features it reads, so it "
        "cannot use them. Retrain from prompt-bearing logs (serve --log-prompts), or train on vectors logged "
        "while serving this same bundle (serve --log-features with the champion)."
    )
    with pytest.raises(FeatureError) as refused:
        run_retrain(
            RetrainConfig(
                decisions=(str(decisions),),
                feedback=(str(feedback),),
                tracking_uri=champion["uri"],
                out_dir=str(champion["tmp"] / "refused"),
            )
        )
    assert str(refused.value) == expected


def test_the_challenger_loads_the_champion_s_own_catalogue_when_its_file_is_gone(tmp_path: Path) -> None:
    from tierroute.models.catalogue import builtin_catalogue, catalogue_from_costs, load_catalogue
    from tierroute.pipelines.lifecycle.retrain import _champion_catalogue

    assert _champion_catalogue(builtin_catalogue("article"), tmp_path) == "article"  # a built-in: by name
    read_off = catalogue_from_costs({"open-a": 0.001, "open-b": 0.01}, {"open-a": 0.6, "open-b": 0.8}, 200.0)
    kept = tmp_path / "run" / "catalogue.toml"
    kept.parent.mkdir()
    kept.write_text(read_off.to_toml(), encoding="utf-8")
    assert _champion_catalogue(load_catalogue(kept), tmp_path) == str(kept)  # its file, while it is there
    kept.unlink()
    copy = _champion_catalogue(_moved(read_off), tmp_path)
    assert copy == str(tmp_path / "champion-catalogue.toml")
    assert load_catalogue(copy).candidates == read_off.candidates


def _moved(catalogue):  # noqa: ANN001, ANN201 - a catalogue whose source file no longer exists
    import dataclasses

    return dataclasses.replace(catalogue, source="/gone/catalogue.toml")
