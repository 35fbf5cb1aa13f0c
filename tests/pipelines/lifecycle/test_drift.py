"""Drift: PSI per logged signal and per candidate's P(correct), tier mix, embedding centroid,
against the reference a bundle carries; the decision log's reader refuses what is not one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tierroute.errors import DataFormatError
from tierroute.pipelines.lifecycle.drift import drift_report, psi, read_decision_log, reference_stats

NAMES = ("n_tokens", "depth_score", "sla_ms", "schema_present", "latency_sensitive", "other")


def _reference(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.integers(10, 400, 2000),
            rng.integers(1, 4, 2000),
            np.where(rng.random(2000) < 0.3, np.nan, 500.0),
            rng.random(2000) < 0.4,
            np.zeros(2000),
            rng.random(2000),
        ]
    )
    proba = np.column_stack([rng.beta(2, 3, 2000), rng.beta(5, 2, 2000)])
    tiers = np.where(proba[:, 0] > 0.4, "tier1", "tier3")
    return reference_stats(X, NAMES, proba, ("small", "big"), tiers, rng.normal(size=(2000, 4)) + 1.0)


def _rows(n: int, seed: int, tokens: tuple[int, int] = (10, 400), tier1: float = 0.5) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "model": "m",
            "tier": "tier1" if rng.random() < tier1 else "tier3",
            "latency_sla_ms": None if rng.random() < 0.3 else 500.0,
            "has_schema": bool(rng.random() < 0.4),
            "probabilities": {"small": rng.beta(2, 3), "big": rng.beta(5, 2)},
            "signals": {"token_count": int(rng.integers(*tokens)), "depth": int(rng.integers(1, 4)), "latency_sensitive": False},
        }
        for _ in range(n)
    ]


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert 0 < psi([0.5, 0.5], [0.6, 0.4]) < psi([0.5, 0.5], [0.9, 0.1])
    assert np.isfinite(psi([1.0, 0.0], [0.0, 1.0]))  # empty bins are floored, never infinite


def test_traffic_like_training_flags_nothing() -> None:
    tier_share = _reference()["tier_mix"]["tier1"]
    report = drift_report(_reference(), _rows(1500, seed=1, tier1=tier_share))
    assert report["flagged"] == [] and report["requests"] == 1500
    assert set(report["signals"]) == {"n_tokens", "depth_score", "sla_ms", "schema_present", "latency_sensitive"}
    assert all(v["psi"] < 0.1 for v in report["signals"].values())


def test_longer_prompts_and_another_tier_mix_are_flagged() -> None:
    report = drift_report(_reference(), _rows(1500, seed=2, tokens=(800, 3000), tier1=0.05))
    assert report["signals"]["n_tokens"]["flag"] == "shift" and report["signals"]["n_tokens"]["psi"] >= 0.25
    assert "signals.n_tokens: shift" in report["flagged"] and "tier_mix.tier1: shift" in report["flagged"]
    assert report["signals"]["depth_score"]["flag"] == "ok"


def test_the_embedding_centroid_is_compared_when_prompts_are_logged() -> None:
    class Encoder:
        def __init__(self, vector: list[float]) -> None:
            self.vector = np.asarray(vector, dtype=float)

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.tile(self.vector, (len(texts), 1))

    rows = [{**r, "prompt": "text"} for r in _rows(50, seed=3)]
    same = drift_report(_reference(), rows, encoder=Encoder([1.0, 1.0, 1.0, 1.0]))
    moved = drift_report(_reference(), rows, encoder=Encoder([1.0, -1.0, 1.0, -1.0]))
    assert same["embedding_centroid"]["flag"] == "ok" and same["embedding_centroid"]["prompts"] == 50
    assert moved["embedding_centroid"]["flag"] == "shift" and "embedding_centroid: shift" in moved["flagged"]
    assert "embedding_centroid" not in drift_report(_reference(), _rows(50, seed=3), encoder=Encoder([1, 1, 1, 1]))


def test_the_log_reader_and_empty_logs(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"model": "m"}) + "\n\n" + json.dumps({"model": "n"}) + "\n", encoding="utf-8")
    assert [r["model"] for r in read_decision_log([good])] == ["m", "n"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model": "m"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2 is not JSON \(Expecting value\); a decision log has one object per line\.$"):
        read_decision_log([bad])
    other = tmp_path / "other.jsonl"
    other.write_text('{"prompt": "x"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"other\.jsonl:1 is not a decision-log record \(no 'model'\)"):
        read_decision_log([other])
    with pytest.raises(DataFormatError, match=r"^The decision log is empty; nothing to compare\."):
        drift_report(_reference(), [])


def test_the_drift_command_on_a_trained_bundle(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    from tierroute.cli import main
    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.export import export_bundle
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
    from tierroute.pipelines.training.train import training_reference
    from tierroute.serving import Router, RouterConfig
    from tierroute.serving.decision_log import DecisionLog

    frame = pd.DataFrame(list(generate(SyntheticConfig(300, seed=4))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    router = LearnedRouter(
        LearnedConfig(encoder="none", router=RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1))
    ).fit(data, builtin_catalogue("article"))
    bundle = export_bundle(router, tmp_path / "bundle", reference=training_reference(router, data))
    with DecisionLog(tmp_path / "log.jsonl") as log:
        served = Router.load(bundle, RouterConfig(deadline_ms=None), strict=True, decision_log=log)
        served.route_batch([{"prompt": "Step by step, analyze and compare. " * 400} for _ in range(60)])
    out = io.StringIO()
    code = main(
        ["drift", "--bundle", str(bundle), "--log", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "d"), "--fail-on-drift", "--json"],
        out=out,
    )
    report = json.loads(out.getvalue())
    assert code == 4 and "signals.n_tokens: shift" in report["flagged"]
    assert json.loads((tmp_path / "d" / "drift.json").read_text(encoding="utf-8"))["flagged"] == report["flagged"]
    plain = export_bundle(router, tmp_path / "plain")  # no reference: a clear error
    assert main(["drift", "--bundle", str(plain), "--log", str(tmp_path / "log.jsonl")], out=io.StringIO()) == 1
