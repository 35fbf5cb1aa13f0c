"""RouterBundle export: the folder's files and checksums, the manifest, a reproducible bundle id,
the refusals, every model layout, calibration and encoder, and ONNX-vs-LightGBM parity (on
synthetic data, and on RouterBench's real test split when ../shared/data is there)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("onnxmltools")

from tierroute.errors import ConfigError, OutputDirError  # noqa: E402
from tierroute.features.static import StaticEncoder  # noqa: E402
from tierroute.models.catalogue import builtin_catalogue  # noqa: E402
from tierroute.models.export import BUNDLE_KIND, BUNDLE_SCHEMA_VERSION, export_bundle  # noqa: E402
from tierroute.models.learned import LearnedConfig, LearnedRouter  # noqa: E402
from tierroute.models.router import CALIBRATIONS, ROUTER_KINDS, RouterParams  # noqa: E402
from tierroute.pipelines.data.dataset import RoutingData  # noqa: E402
from tierroute.serving.bundle import load_bundle  # noqa: E402
from tierroute.serving.router import Router, RouterConfig  # noqa: E402

NO_DEADLINE = RouterConfig(deadline_ms=None)  # parity must not depend on how busy the machine is


def tiny(kind: str = "pooled", calibration: str = "isotonic", seed: int = 0, encoder: str = "none") -> LearnedConfig:
    return LearnedConfig(
        encoder=encoder,
        router=RouterParams(
            kind=kind, calibration=calibration, n_estimators=30, n_folds=2, early_stopping_rounds=10, n_threads=1, seed=seed
        ),
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data() -> tuple[RoutingData, RoutingData]:
    import pandas as pd

    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    frame = pd.DataFrame(list(generate(SyntheticConfig(300, seed=5))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    routing = RoutingData.from_frame(frame)
    return routing.subset(np.arange(200)), routing.subset(np.arange(200, 300))


@pytest.fixture(scope="module")
def fit(data):  # noqa: ANN001, ANN201 - a cached factory of tiny fitted routers
    train, _ = data
    fitted: dict[tuple[str, str, int], LearnedRouter] = {}

    def get(kind: str = "pooled", calibration: str = "isotonic", seed: int = 0) -> LearnedRouter:
        key = (kind, calibration, seed)
        if key not in fitted:
            fitted[key] = LearnedRouter(tiny(kind, calibration, seed)).fit(train, builtin_catalogue("article"))
        return fitted[key]

    return get


@pytest.fixture(scope="module")
def static_encoder(data) -> StaticEncoder:  # noqa: ANN001
    """The static encoder's real layout (o200k BPE ids of the training prompts) with a small random
    table (K x 8) in place of distilled vectors: no torch, no MiniLM."""
    train, _ = data
    ids = np.asarray(StaticEncoder.vocabulary([r.prompt for r in train.requests]), dtype=np.int64)
    table = np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32)
    return StaticEncoder(ids, table, name="tiny-static")


def assert_parity(router: LearnedRouter, bundle: Path, requests) -> float:  # noqa: ANN001
    """Router (ONNX + numpy calibration) against LearnedRouter (LightGBM + scikit-learn): the same
    probabilities within 1e-5 and the same decision for every request; returns the max diff."""
    served = Router.load(bundle, NO_DEADLINE, strict=True)
    decisions = served.route_batch(list(requests))
    assert {d.source for d in decisions} == {"learned"}
    onnx = np.array([[d.probabilities[c] for c in router.candidates_] for d in decisions])
    lgbm, _ = router.predict_proba(list(requests))
    diff = float(np.abs(onnx - lgbm).max())
    assert diff < 1e-5
    picks = router.decide(list(requests))
    assert [d.model for d in decisions] == [router.candidates_[j] for j in picks]
    return diff


# -- the folder and its manifest -------------------------------------------------------------------


def test_every_file_is_listed_with_its_sha256(fit, tmp_path: Path) -> None:  # noqa: ANN001
    out = export_bundle(fit(), tmp_path / "bundle")
    assert out == tmp_path / "bundle"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    on_disk = {p.name for p in out.iterdir()}
    assert on_disk == {"manifest.json", "model.onnx", "trees.npy"}  # trees.npy: the tree table explanations read
    assert manifest["files"] == {name: sha256(out / name) for name in ("model.onnx", "trees.npy")}
    # nothing left beside it (the temporary sibling folder was moved in, not copied)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_manifest_fields(fit, tmp_path: Path) -> None:  # noqa: ANN001
    router = fit()
    metrics = {"aiq": np.float64(0.5), "ece": float("nan"), "requests": np.int64(100), "nested": {"x": [np.float32(1.5)]}}
    out = export_bundle(router, tmp_path / "b", metrics=metrics, training={"inputs": ["a.jsonl"], "rows": 600})
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["kind"] == BUNDLE_KIND == "tierroute.router_bundle"
    assert m["schema_version"] == BUNDLE_SCHEMA_VERSION == 1
    assert m["feature_spec"] == router.feature_spec_.to_dict()
    assert m["feature_spec_fingerprint"] == router.feature_spec_.fingerprint()
    assert m["signals"] == router.config.signals.to_dict()
    assert m["encoder"] is None
    n_request = len(router.feature_spec_.names)
    assert m["model"] == {
        "kind": "pooled",
        "files": ["model.onnx"],
        "input": "input",
        "output": "probabilities",
        "n_request_features": n_request,
        "trees": "trees.npy",
        "candidate_features": np.asarray(router.candidate_features_, dtype=float).tolist(),
    }
    assert len(m["calibration"]) == len(router.candidates_) and all(c["method"] == "isotonic" for c in m["calibration"])
    assert m["cost_model"] == {"intercept": router.cost_model_.intercept.tolist(), "slope": router.cost_model_.slope.tolist()}
    assert m["policy"] == router.policy_.to_dict()
    assert m["candidates"] == list(router.candidates_) == ["claude-3-haiku", "gpt-4o", "gpt-4o-mini"]
    assert m["catalogue"] == builtin_catalogue("article").to_dict()
    training = m["training"]
    assert training["requests"] == 200 and training["inputs"] == ["a.jsonl"] and training["rows"] == 600
    hashes = "\n".join(sorted(router.train_prompt_hashes_)).encode("utf-8")
    assert training["prompts_sha256"] == hashlib.sha256(hashes).hexdigest()
    assert training["config"] == router.config.to_dict()
    assert m["metrics"] == {"aiq": 0.5, "ece": None, "requests": 100, "nested": {"x": [1.5]}}  # strict JSON: NaN -> null
    from tierroute import __version__

    assert m["versions"]["tierroute"] == __version__ and m["versions"]["onnxruntime"]
    assert len(m["bundle_id"]) == 16 and int(m["bundle_id"], 16) >= 0
    assert m["created"].endswith("+00:00")

    import onnx

    model = onnx.load(str(out / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["probabilities"]  # the converter's fixed-shape label is dropped
    assert [i.name for i in model.graph.input] == ["input"]
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == n_request + 1 + router.candidate_features_.shape[1]


def test_the_bundle_id_is_reproducible_and_names_what_is_served(fit, tmp_path: Path) -> None:  # noqa: ANN001
    router = fit()
    a, b = export_bundle(router, tmp_path / "a"), export_bundle(router, tmp_path / "b")
    ma, mb = (json.loads((p / "manifest.json").read_text(encoding="utf-8")) for p in (a, b))
    assert ma["bundle_id"] == mb["bundle_id"]
    assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()
    # provenance (metrics, training inputs) is recorded but does not rename what is served
    noted = export_bundle(router, tmp_path / "f", metrics={"aiq": 0.3}, training={"inputs": ["x.jsonl"]})
    assert json.loads((noted / "manifest.json").read_text(encoding="utf-8"))["bundle_id"] == ma["bundle_id"]
    # another seed: other trees, another id
    other = json.loads((export_bundle(fit(seed=1), tmp_path / "c") / "manifest.json").read_text(encoding="utf-8"))
    assert other["bundle_id"] != ma["bundle_id"]
    # the same trees calibrated another way serve other probabilities (and decisions): another id
    sigmoid_dir = export_bundle(fit(calibration="sigmoid"), tmp_path / "d")
    assert (sigmoid_dir / "model.onnx").read_bytes() == (a / "model.onnx").read_bytes()
    sigmoid = json.loads((sigmoid_dir / "manifest.json").read_text(encoding="utf-8"))
    assert sigmoid["bundle_id"] != ma["bundle_id"]
    # ... and so does the same router with another policy knob
    knob = copy.copy(router)
    knob.policy_ = type(router.policy_)(router.policy_.kind, router.policy_.value * 2 + 0.01, router.policy_.frontier)
    moved = json.loads((export_bundle(knob, tmp_path / "e") / "manifest.json").read_text(encoding="utf-8"))
    assert moved["bundle_id"] != ma["bundle_id"]


def test_refuses_a_non_empty_folder_and_leaves_it_alone(fit, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(
        OutputDirError,
        match=r"^The bundle folder '.*taken' already exists and is not empty; a bundle is "
        r"never written over existing files\. Pass a new --out folder",
    ):
        export_bundle(fit(), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary folder left beside it
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(OutputDirError, match=r"^The bundle folder '.*file' already exists and is not empty"):
        export_bundle(fit(), a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export_bundle(fit(), empty) / "manifest.json").is_file()  # an empty folder is fine


def test_a_failed_export_leaves_nothing_behind(fit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import tierroute.models.export as export

    def broken(booster, n_features):  # noqa: ANN001, ANN202
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(export, "booster_to_onnx", broken)
    with pytest.raises(RuntimeError, match="^converter exploded$"):
        export_bundle(fit(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor the half-written temporary folder


class FakeEncoder:
    """An encoder with no static table (like MiniLM): it cannot be served without torch."""

    id = "fake:2"
    dims = 2

    def encode(self, texts):  # noqa: ANN001, ANN201
        return np.zeros((len(texts), 2), dtype=np.float32)


def test_refuses_a_router_it_cannot_serve(fit, tmp_path: Path) -> None:  # noqa: ANN001
    with_fake = copy.copy(fit())
    with_fake.encoder = FakeEncoder()
    with pytest.raises(
        ConfigError,
        match=r"^Bundles serve the static or the MiniLM-ONNX encoder \(or none\); this router was "
        r"trained with 'fake:2'\. Retrain with --encoder static or --encoder minilm\.$",
    ):
        export_bundle(with_fake, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"^Only a fitted LearnedRouter can be exported; call fit first"):
        export_bundle(LearnedRouter(tiny()), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -- every layout, calibration and encoder: export, load, parity --------------------------------------


@pytest.mark.parametrize("calibration", CALIBRATIONS)
@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_export_load_and_parity(kind: str, calibration: str, fit, data, tmp_path: Path) -> None:  # noqa: ANN001
    router = fit(kind, calibration)
    out = export_bundle(router, tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    m = len(router.candidates_)
    files = ["model.onnx"] if kind == "pooled" else [f"model-{j}.onnx" for j in range(m)]
    assert manifest["model"]["kind"] == kind and manifest["model"]["files"] == files
    assert set(manifest["files"]) == {*files, "trees.npy"} and manifest["model"]["trees"] == "trees.npy"
    tables = manifest["calibration"]
    assert len(tables) == m
    for table in tables:
        assert table["method"] == calibration
        assert set(table) == {"isotonic": {"method", "x", "y"}, "sigmoid": {"method", "a", "b"}, "none": {"method"}}[calibration]
    bundle = load_bundle(out)
    assert bundle.kind == kind and len(bundle.sessions) == len(files) and bundle.candidates == router.candidates_
    assert [c.method for c in bundle.calibrations] == [calibration] * m
    _, test = data
    assert_parity(router, out, test.requests)


def test_static_encoder_export_and_parity(data, static_encoder: StaticEncoder, tmp_path: Path) -> None:  # noqa: ANN001
    train, test = data
    router = LearnedRouter(tiny(encoder="static"), encoder=static_encoder).fit(train, builtin_catalogue("article"))
    out = export_bundle(router, tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    encoder_files = ["static_ids.npy", "static_table.npy", "static.json"]
    assert set(manifest["files"]) == {"model.onnx", "trees.npy", *encoder_files}
    for name, digest in manifest["files"].items():
        assert sha256(out / name) == digest
    assert manifest["encoder"] == {
        "kind": "static",
        "id": static_encoder.id,
        "dims": 8,
        "tokenizer": "bpe:o200k_base",
        "files": encoder_files,
    }
    assert manifest["feature_spec"]["embedding"] == static_encoder.id and manifest["feature_spec"]["embedding_dims"] == 8
    bundle = load_bundle(out)
    assert bundle.encoder.id == static_encoder.id and bundle.n_features == len(router.feature_spec_.names)
    np.testing.assert_array_equal(bundle.encoder.table, static_encoder.table)
    np.testing.assert_array_equal(bundle.encoder.token_ids, static_encoder.token_ids)
    assert_parity(router, out, test.requests)
    # one request alone takes the encoder's single-text path: the same probabilities as in a batch
    served = Router.load(out, NO_DEADLINE, strict=True)
    batch = served.route_batch(list(test.requests[:5]))
    for request, expected in zip(test.requests[:5], batch):
        alone = served.route(request)
        assert alone.model == expected.model
        assert alone.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


# -- parity on real data ---------------------------------------------------------------------------


@pytest.mark.shared_data
def test_parity_on_routerbench_test_split(shared_data: Path, tmp_path: Path) -> None:
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest

    folder = shared_data / "routerbench" / "routerbench_zs"

    def ingest(split: str) -> RoutingData:
        paths = tuple(str(folder / f"{task}_{split}.csv") for task in ("arc_challenge", "mbpp", "winograde"))
        return RoutingData.from_frame(run_ingest(IngestConfig(paths=paths, out_dir=str(tmp_path / split))).to_pandas())

    train, test = ingest("train").complete(), ingest("test")
    assert len(train.candidates) == 11 and test.n_requests > 900
    router = LearnedRouter(tiny()).fit(train, builtin_catalogue("routerbench"))
    diff = assert_parity(router, export_bundle(router, tmp_path / "bundle"), test.requests)
    print(f"\nRouterBench test split: {test.n_requests} requests x {len(train.candidates)} candidates, max |ONNX - LightGBM| = {diff:.3g}")
