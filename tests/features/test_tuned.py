"""The outcome-tuned static table (features/tuned.py): its shape, its determinism, that it pulls
prompts with the same outcome pattern together, that it distils exactly into a static table, and
that a router trained with ``--encoder tuned`` bundles it as a static table served without torch."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.features.embeddings import encoder_manifest, load_encoder
from tierroute.features.static import StaticEncoder
from tierroute.features.tuned import TUNED_NAME, TuneConfig, outcome_vectors, tune_projection, tune_static

pytest.importorskip("torch")

FAST = TuneConfig(steps=120, batch_size=128, learning_rate=0.02)


def synthetic(n: int = 240, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base vectors whose outcome pattern (one of 3 groups over 3 candidates) lives in the *last*
    columns, which the untuned start (the first PCA columns) drops: (x, correct, group)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    x = rng.normal(size=(n, d))
    x[:, -3:] += 3.0 * np.eye(3)[group]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    patterns = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1]], dtype=float)
    correct = patterns[group].copy()
    correct[rng.random(correct.shape) < 0.05] = np.nan  # a few unknown outcomes
    return x.astype(np.float32), correct, group


def separation(z: np.ndarray, group: np.ndarray) -> float:
    """Mean cosine within the same outcome group minus across groups."""
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    same = group[:, None] == group[None, :]
    off = ~np.eye(len(z), dtype=bool)
    return float(sim[same & off].mean() - sim[~same].mean())


def test_outcome_vectors_centre_scale_and_drop_unknown_rows() -> None:
    correct = np.array([[1, 0], [0, 0], [np.nan, np.nan], [1, np.nan]], dtype=float)
    rows, y = outcome_vectors(correct)
    assert rows.tolist() == [0, 1, 3] and y.shape == (3, 2) and y.dtype == np.float32
    assert y[2, 1] == 0.0  # unknown: at the column mean
    np.testing.assert_allclose(y[:, 0].mean(), 0.0, atol=1e-6)
    assert np.all(y[:, 1] == 0.0)  # a constant column carries nothing
    with pytest.raises(ConfigError):
        outcome_vectors(np.zeros(3))


def test_projection_has_the_right_shape_and_is_deterministic_under_a_seed() -> None:
    x, correct, _ = synthetic()
    first = tune_projection(x, correct, 4, FAST)
    assert first.shape == (16, 4) and first.dtype == np.float32
    np.testing.assert_array_equal(first, tune_projection(x, correct, 4, FAST))
    assert not np.array_equal(first, tune_projection(x, correct, 4, dataclasses.replace(FAST, seed=1)))
    untuned = tune_projection(x, correct, 4, TuneConfig(steps=0))
    np.testing.assert_array_equal(untuned, np.eye(16, 4, dtype=np.float32))  # the start: the base's first columns
    with pytest.raises(ConfigError):
        tune_projection(x, correct[:10], 4, FAST)


def test_prompts_with_the_same_outcome_pattern_end_up_closer() -> None:
    x, correct, group = synthetic()
    before = separation(x @ np.eye(16, 4), group)
    after = separation(x @ tune_projection(x, correct, 4, FAST), group)
    assert after > before + 0.2, (before, after)
    # and on prompts it never saw (the same generator, another seed)
    x2, _, group2 = synthetic(seed=1)
    assert separation(x2 @ tune_projection(x, correct, 4, FAST), group2) > separation(x2 @ np.eye(16, 4), group2) + 0.2


@pytest.fixture(scope="module")
def base() -> tuple[StaticEncoder, list[str]]:
    prompts = [f"Classify ticket {i}: my card was charged twice." for i in range(30)]
    prompts += [f"Prove that {i} squared plus one is never divisible by three." for i in range(30)]
    ids = np.asarray(StaticEncoder.vocabulary(prompts), dtype=np.int64)
    table = np.random.default_rng(0).standard_normal((len(ids), 16)).astype(np.float32)
    return StaticEncoder(ids, table, name="tiny-static"), prompts


def test_the_tuned_table_is_the_projection_distilled_exactly(base, tmp_path: Path) -> None:  # noqa: ANN001
    encoder, prompts = base
    correct = np.repeat(np.array([[1.0, 1.0], [0.0, 1.0]]), 30, axis=0)
    vectors = encoder.encode(prompts)
    tuned = tune_static(encoder, vectors, correct, 4, FAST)
    assert tuned.dims == 4 and tuned.name == TUNED_NAME and tuned.table.shape == (len(encoder.token_ids), 4)
    np.testing.assert_array_equal(tuned.token_ids, encoder.token_ids)
    projected = vectors.astype(np.float64) @ tune_projection(vectors, correct, 4, FAST).astype(np.float64)
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    np.testing.assert_allclose(tuned.encode(prompts), projected, atol=1e-5)  # normalise(W^T x) = the pooled tuned rows
    # a bundle stores it as any static table
    tuned.save(tmp_path)
    info = encoder_manifest(tuned)
    assert info["kind"] == "static" and info["id"].startswith(f"{TUNED_NAME}:4:")
    again = load_encoder(tmp_path, info)
    assert again.id == tuned.id
    np.testing.assert_array_equal(again.encode(prompts), tuned.encode(prompts))
    with pytest.raises(ConfigError):
        tune_static(encoder, vectors[:, :8], correct, 4, FAST)


def test_make_encoder_needs_the_outcomes(tmp_path: Path) -> None:
    from tierroute.pipelines.encoders import make_encoder

    with pytest.raises(ConfigError, match="outcomes"):
        make_encoder("tuned", ["a prompt"], tmp_path, dims=8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """``--encoder tuned --kind pooled`` on small synthetic data; the 256-wide base table is a random
    one (no MiniLM distillation: the test is about the tuned path, not MiniLM)."""
    from tierroute.features import embeddings
    from tierroute.models.learned import LearnedConfig
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training.train import TrainConfig, run_train

    def fake_distill(vocabulary, dims=256, step=None, **_):  # noqa: ANN001, ANN003, ANN202
        ids = np.asarray(sorted(set(int(t) for t in vocabulary)), dtype=np.int64)
        return StaticEncoder(ids, np.random.default_rng(0).standard_normal((len(ids), dims)).astype(np.float32))

    tmp = tmp_path_factory.mktemp("tuned-train")
    patch = pytest.MonkeyPatch()
    patch.setattr(embeddings, "distill_static", fake_distill)
    try:
        tiny = RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=10)
        return run_train(
            TrainConfig(
                encoder="tuned",
                kind="pooled",
                static_dims=8,
                synthetic_requests=240,
                learned=LearnedConfig(router=tiny),
                tracking_uri="",
                out_dir=str(tmp / "run"),
                cache_dir=str(tmp / "cache"),
            )
        )
    finally:
        patch.undo()


def test_train_with_the_tuned_encoder_bundles_a_static_table(trained) -> None:  # noqa: ANN001
    from tierroute.request import Request
    from tierroute.serving import Router, RouterConfig

    encoder = trained.router.encoder
    assert isinstance(encoder, StaticEncoder) and encoder.name == TUNED_NAME and encoder.dims == 8
    manifest = json.loads((trained.out_dir / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["encoder"]["kind"] == "static" and manifest["encoder"]["id"] == encoder.id
    router = Router.load(trained.out_dir / "bundle", RouterConfig(deadline_ms=None), strict=True)
    prompts = ["Extract the order id from this email.", "Prove the theorem step by step."]
    decisions = [router.route({"prompt": p}) for p in prompts]
    assert [d.source for d in decisions] == ["learned"] * 2, [d.reason for d in decisions]
    expected, _ = trained.router.predict_proba([Request(p) for p in prompts])
    served = np.array([[d.probabilities[c] for c in trained.router.candidates_] for d in decisions])
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_a_tuned_bundle_serves_where_torch_cannot_be_imported(trained) -> None:  # noqa: ANN001
    code = (
        "import sys, json\n"
        "for name in ('torch', 'transformers', 'sentence_transformers'):\n"
        "    sys.modules[name] = None  # importing any of them now raises ImportError\n"
        "from tierroute.serving import Router, RouterConfig\n"
        f"router = Router.load({str(trained.out_dir / 'bundle')!r}, RouterConfig(deadline_ms=None), strict=True)\n"
        "d = router.route({'prompt': 'Summarise this article about tidal power in three bullet points.'})\n"
        "print(json.dumps({'source': d.source, 'reason': d.reason, 'encoder': router.bundle.encoder.id}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["source"] == "learned", out["reason"]
    assert out["encoder"].startswith(f"{TUNED_NAME}:8:")
