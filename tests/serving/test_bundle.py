"""Reading and verifying a RouterBundle: one test per fault, each pinning the BundleError's code
(what a fallback decision reports) and the start of its message; and the numpy calibration maps."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tierroute.serving.bundle import BUNDLE_KIND, BUNDLE_SCHEMA_VERSION, Bundle, BundleError, Calibration, load_bundle


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two pristine bundles (tests copy them before breaking anything): ``pooled`` with a static
    encoder (the training prompts' BPE ids, a random 4-wide table), ``per_candidate`` without one."""
    pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    import pandas as pd

    from tierroute.features.static import StaticEncoder
    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.export import export_bundle
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    frame = pd.DataFrame(list(generate(SyntheticConfig(150, seed=7))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    ids = np.asarray(StaticEncoder.vocabulary([r.prompt for r in data.requests]), dtype=np.int64)
    table = np.random.default_rng(1).standard_normal((len(ids), 4)).astype(np.float32)
    encoder = StaticEncoder(ids, table, name="tiny")
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for kind, enc in (("pooled", encoder), ("per_candidate", None)):
        params = RouterParams(kind=kind, n_estimators=20, n_folds=2, early_stopping_rounds=10, n_threads=1)
        config = LearnedConfig(encoder="static" if enc is not None else "none", router=params)
        router = LearnedRouter(config, encoder=enc).fit(data, builtin_catalogue("article"))
        out[kind] = export_bundle(router, root / kind)
    return out


@pytest.fixture
def bundle(exported: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the pooled bundle, to damage."""
    return Path(shutil.copytree(exported["pooled"], tmp_path / "bundle"))


def manifest_of(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text(encoding="utf-8"))


def edit_manifest(path: Path, change: Callable[[dict[str, Any]], None], rehash: bool = True, restamp: bool = True) -> None:
    """Edit the manifest; with ``rehash``, record the files' current sha256s, and with ``restamp``
    the manifest's digest as its bundle_id (as a careful forger would), so the checks behind those
    are what catches the edit."""
    from tierroute.serving.bundle import manifest_digest

    manifest = manifest_of(path)
    change(manifest)
    if rehash and isinstance(manifest.get("files"), dict):
        manifest["files"] = {n: hashlib.sha256((path / n).read_bytes()).hexdigest() for n in manifest["files"]}
    if restamp:
        manifest["bundle_id"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def refused(path: Path, code: str, message: str) -> BundleError:
    """load_bundle(path) raises BundleError with ``code`` and a message starting with ``message``
    (a regex; ``{p}`` stands for the bundle's path as repr'd)."""
    pattern = "^" + message.replace("{p}", re.escape(repr(str(path))))
    with pytest.raises(BundleError, match=pattern) as info:
        load_bundle(path)
    assert info.value.code == code
    return info.value


# -- a good bundle -------------------------------------------------------------------------------


def test_a_good_bundle_loads(exported: dict[str, Path]) -> None:
    for kind, path in exported.items():
        b = load_bundle(path)
        assert isinstance(b, Bundle) and b.kind == kind and b.path == path
        assert b.bundle_id == manifest_of(path)["bundle_id"] and len(b.bundle_id) == 16
        assert b.candidates == ("claude-3-haiku", "gpt-4o", "gpt-4o-mini")
        assert len(b.sessions) == (1 if kind == "pooled" else 3) and len(b.calibrations) == 3
        assert b.candidate_features.shape == (3, 3) and b.candidate_features.dtype == np.float32
        assert b.cost_intercept.shape == b.cost_slope.shape == (3,)
        assert b.catalogue.name == "article" and b.policy.kind == "lambda"
        assert (b.encoder is None) == (kind == "per_candidate")
        assert b.n_features == len(b.extractor.feature_names) + (4 if kind == "pooled" else 0)


def test_the_runtime_and_the_exporter_agree_on_the_format() -> None:
    pytest.importorskip("onnxmltools")
    from tierroute.models import export

    assert (BUNDLE_SCHEMA_VERSION, BUNDLE_KIND) == (export.BUNDLE_SCHEMA_VERSION, export.BUNDLE_KIND)


# -- the folder and the manifest -----------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    refused(tmp_path / "nowhere", "no_bundle", r"No router bundle at {p} \(nothing there\)\. Pass the folder `tierroute export` wrote\.$")


def test_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    refused(tmp_path / "file", "bundle_unreadable", r"No router bundle at {p} \(not a folder\)\.")


def test_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    refused(tmp_path, "bundle_unreadable", r"{p} has no manifest\.json, so it is not a router bundle\. Pass the folder")


def test_manifest_not_json(bundle: Path) -> None:
    (bundle / "manifest.json").write_text('{"kind": "tierroute.router_bundle",', encoding="utf-8")
    refused(
        bundle,
        "bundle_unreadable",
        r"The manifest\.json of {p} cannot be read \(Expecting .*\)\. "
        r"The bundle is damaged: re-export it\.$",
    )


def test_manifest_not_utf8(bundle: Path) -> None:
    (bundle / "manifest.json").write_bytes(b"\xff\xfe{}")
    refused(bundle, "bundle_unreadable", r"The manifest\.json of {p} cannot be read \(")


def test_wrong_kind(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m.update(kind="tierroute.learned_router"))
    refused(
        bundle,
        "bundle_unreadable",
        r"{p}/manifest\.json has kind 'tierroute\.learned_router' \(str\); expected "
        r"'tierroute\.router_bundle'\. Pass the folder `tierroute export` wrote\.$",
    )


def test_manifest_that_is_not_an_object(bundle: Path) -> None:
    (bundle / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    refused(bundle, "bundle_unreadable", r"{p}/manifest\.json has kind \[1, 2\] \(list\); expected 'tierroute\.router_bundle'")


@pytest.mark.parametrize("version", [3, 0, "1", None, True])
def test_unknown_schema_version(bundle: Path, version: object) -> None:
    edit_manifest(bundle, lambda m: m.update(schema_version=version))
    refused(
        bundle,
        "unknown_schema_version",
        rf"Bundle {{p}} has schema version {re.escape(repr(version))} "
        rf"\({type(version).__name__}\); this tierroute serves versions 1 and 2\. Re-export it",
    )


# -- the files ------------------------------------------------------------------------------------


def test_a_byte_flipped_in_the_model(bundle: Path) -> None:
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "model.onnx").write_bytes(bytes(data))
    expected = manifest_of(bundle)["files"]["model.onnx"]
    refused(
        bundle,
        "checksum_mismatch",
        rf"'model\.onnx' in bundle {{p}} has sha256 [0-9a-f]{{12}}\.\.\., the manifest "
        rf"expects {expected[:12]}\.\.\.: the file changed after export\. Re-export the bundle\.$",
    )


@pytest.mark.parametrize("name", ["model.onnx", "static_ids.npy", "static_table.npy", "static.json"])
def test_a_listed_file_deleted(bundle: Path, name: str) -> None:
    (bundle / name).unlink()
    refused(
        bundle,
        "checksum_mismatch",
        rf"Bundle {{p}} lists {re.escape(repr(name))} but it is missing\. Copy the whole "
        r"bundle folder, or re-export it\.$",
    )


def test_a_listed_name_outside_the_folder(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.bin").write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    edit_manifest(bundle, lambda m: m["files"].update({"../outside.bin": digest}), rehash=False)
    refused(bundle, "checksum_mismatch", r"Bundle {p} lists '\.\./outside\.bin' but it is missing\.")


def test_the_static_table_edited(bundle: Path) -> None:
    table = np.load(bundle / "static_table.npy")
    np.save(bundle / "static_table.npy", table * 2)
    refused(bundle, "checksum_mismatch", r"'static_table\.npy' in bundle {p} has sha256 ")


def test_checksums_can_be_skipped(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["files"].update({"model.onnx": "0" * 64}), rehash=False)
    refused(bundle, "checksum_mismatch", r"'model\.onnx' in bundle {p} has sha256 [0-9a-f]{12}\.\.\., the manifest expects 000000000000")
    assert load_bundle(bundle, verify=False).kind == "pooled"


@pytest.mark.parametrize(
    "key,value",
    [("policy", {"kind": "lambda", "value": 99.0, "frontier": None}), ("cost_model", {"intercept": [0, 0, 0], "slope": [0, 0, 0]})],
)
def test_a_hand_edited_manifest_is_caught_by_its_digest(bundle: Path, key: str, value: object) -> None:
    before = manifest_of(bundle)["bundle_id"]
    edit_manifest(bundle, lambda m: m.update({key: value}), restamp=False)
    refused(
        bundle,
        "checksum_mismatch",
        rf"The manifest\.json of bundle {{p}} changed after export: its content digest is "
        rf"[0-9a-f]{{16}}, its bundle_id says '{before}' \(str\)\. Re-export the bundle",
    )


def test_provenance_fields_may_change_without_changing_the_bundle(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m.update(metrics={"aiq": 0.1}, created="2000-01-01"), restamp=False)
    assert load_bundle(bundle).bundle_id == manifest_of(bundle)["bundle_id"]


def test_no_files_listed(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m.pop("files"), rehash=False)
    refused(
        bundle,
        "bundle_invalid",
        r"The manifest of bundle {p} has 'files' = None \(NoneType\); expected it from "
        r"`tierroute export`\.",
    )


# -- what the manifest says -----------------------------------------------------------------------


def test_signals_config_edited(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["signals"].update(long_prompt_tokens=1500))
    refused(
        bundle,
        "feature_spec_mismatch",
        r"Bundle {p} cannot be served: Feature spec mismatch on 'signals': the model was trained with "
        r".*'long_prompt_tokens': 1000.*, this runtime builds .*'long_prompt_tokens': 1500",
    )


def test_encoder_table_of_another_model(bundle: Path) -> None:
    """A different (but intact, rehashed) static table: another embedding id than the model's."""
    table = np.load(bundle / "static_table.npy")
    np.save(bundle / "static_table.npy", np.ascontiguousarray(table[:, ::-1]))
    edit_manifest(bundle, lambda m: None)
    refused(
        bundle,
        "feature_spec_mismatch",
        r"Bundle {p} cannot be served: Feature spec mismatch on 'embedding': the model was "
        r"trained with 'tiny:4:",
    )


def test_unknown_signal_field(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["signals"].update(colour="blue"))
    refused(bundle, "bundle_invalid", r"Bundle {p} is incomplete or damaged \(TypeError: .*colour.*\)\. Re-export it\.$")


def test_corrupt_onnx_with_a_matching_checksum(bundle: Path) -> None:
    (bundle / "model.onnx").write_bytes(b"this is not an ONNX model")
    edit_manifest(bundle, lambda m: None)  # the forger rehashes: only onnxruntime can tell
    refused(bundle, "onnx_error", r"onnxruntime cannot load 'model\.onnx' from bundle {p} \(.+\)\. Re-export the bundle\.$")


def test_a_model_of_the_wrong_width(bundle: Path, exported: dict[str, Path]) -> None:
    """The per-candidate model (request features only) in place of the pooled one."""
    shutil.copyfile(exported["per_candidate"] / "model-0.onnx", bundle / "model.onnx")
    edit_manifest(bundle, lambda m: None)
    b = load_bundle(exported["pooled"])
    d = len(b.extractor.feature_names)
    refused(
        bundle,
        "feature_spec_mismatch",
        rf"'model\.onnx' in bundle {{p}} takes input shape \[None, {d}\]; the FeatureSpec "
        rf"builds {d + 4 + 1 + 3} columns\. Re-export the bundle\.$",
    )


def test_calibration_list_of_the_wrong_length(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["calibration"].pop())
    refused(
        bundle,
        "bundle_invalid",
        r"Bundle {p} does not fit together: 3 candidates, model kind 'pooled' with 1 file\(s\), "
        r"candidate features of shape \(3, 3\), 2 calibrations, policy frontier None, knob curve candidates \[1\]\. Re-export it\.$",
    )


def test_a_knob_curve_naming_a_candidate_the_bundle_lacks(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["objective"]["curve"]["anchor"].update(candidate=3))
    refused(bundle, "bundle_invalid", r"Bundle {p} does not fit together: 3 candidates, .* knob curve candidates \[3\]\. Re-export it\.$")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m: m["model"].update(kind="forest"), r"Bundle {p} does not fit together: 3 candidates, model kind 'forest'"),
        (lambda m: m["cost_model"]["slope"].pop(), r"Bundle {p} does not fit together: 3 candidates"),
        (
            lambda m: m["model"]["candidate_features"].pop(),
            r"Bundle {p} does not fit together: 3 candidates, model kind 'pooled' with "
            r"1 file\(s\), candidate features of shape \(2, 3\)",
        ),
        (
            lambda m: m["calibration"].__setitem__(0, {"method": "platt"}),
            r"bundle {p_raw} calibration\[0\]: expected a calibration with method isotonic \(x, y\), sigmoid \(a, b\) or none; got "
            r"\{'method': 'platt'\} \(dict\)\. Re-export the bundle\.$",
        ),
        (
            lambda m: m["calibration"].__setitem__(1, {"method": "isotonic", "x": [0.1, 0.2], "y": [0.5]}),
            r"bundle {p_raw} calibration\[1\]: isotonic knots must be two equal-length finite lists; got x \[0\.1, 0\.2\] \(list\), "
            r"y \[0\.5\] \(list\)\. Re-export the bundle\.$",
        ),
        (
            lambda m: m["calibration"].__setitem__(2, {"method": "sigmoid", "a": "1", "b": 0}),
            r"bundle {p_raw} calibration\[2\]: expected a calibration with method isotonic",
        ),
        (
            lambda m: m["catalogue"].update(candidates=[c for c in m["catalogue"]["candidates"] if c["model"] != "gpt-4o"]),
            r"Bundle {p}: candidates \['gpt-4o'\] are not in its catalogue\. Re-export it\.$",
        ),
        (lambda m: m["policy"].update(kind="greedy"), r"Bundle {p} cannot be served: The 'kind' parameter of Policy must be one of "),
        (lambda m: m.pop("cost_model"), r"The manifest of bundle {p} has 'cost_model' = None \(NoneType\)"),
    ],
    ids=[
        "model-kind",
        "cost-length",
        "candidate-rows",
        "calibration-method",
        "isotonic-knots",
        "sigmoid-params",
        "catalogue",
        "policy",
        "no-cost-model",
    ],
)
def test_inconsistent_manifest_is_bundle_invalid(bundle: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    edit_manifest(bundle, change)
    message = message.replace("{p_raw}", re.escape(str(bundle)))
    refused(bundle, "bundle_invalid", message)


# -- calibration maps ---------------------------------------------------------------------------


def test_calibration_maps() -> None:
    scores = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
    iso = Calibration.from_dict({"method": "isotonic", "x": [0.1, 0.5, 0.9], "y": [0.2, 0.4, 1.0]}, "t")
    np.testing.assert_allclose(iso.apply(scores), [0.2, 0.2, 0.275, 0.4, 1.0, 1.0])  # linear between knots, clipped outside
    identity = Calibration.from_dict({"method": "sigmoid", "a": 1.0, "b": 0.0}, "t")
    np.testing.assert_allclose(identity.apply(scores[1:-1]), scores[1:-1])
    shifted = Calibration.from_dict({"method": "sigmoid", "a": 2, "b": -1}, "t")
    logit = np.log(0.25 / 0.75)
    np.testing.assert_allclose(shifted.apply(np.array([0.25])), [1 / (1 + np.exp(-(2 * logit - 1)))])
    assert np.isfinite(shifted.apply(np.array([0.0, 1.0]))).all()  # the ends are clipped, never inf
    none = Calibration.from_dict({"method": "none"}, "t")
    np.testing.assert_array_equal(none.apply(scores), scores)
    with pytest.raises(
        BundleError,
        match=r"^where: expected a calibration with method isotonic \(x, y\), sigmoid \(a, b\) or none; "
        r"got None \(NoneType\)\.",
    ) as info:
        Calibration.from_dict(None, "where")
    assert info.value.code == "bundle_invalid"
    with pytest.raises(BundleError, match=r"^where: isotonic knots must be two equal-length finite lists"):
        Calibration.from_dict({"method": "isotonic", "x": [0.1, float("nan")], "y": [0.1, 0.2]}, "where")


@pytest.mark.parametrize("name", ["../outside.onnx", "/tmp/elsewhere.onnx", "unlisted.onnx"])
def test_a_model_file_outside_the_checksums_is_refused(bundle: Path, name: str) -> None:
    import shutil as _shutil

    _shutil.copy(bundle / "model.onnx", bundle / "unlisted.onnx")
    edit_manifest(bundle, lambda m: m["model"].update(files=[name]))
    refused(
        bundle,
        "bundle_invalid",
        r"Bundle {p} names " + re.escape(repr(name)) + r" as a model or encoder file; expected a "
        r"plain file name inside the bundle that manifest 'files' lists",
    )


def test_malformed_fields_behind_a_valid_digest_fall_back_instead_of_crashing(bundle: Path) -> None:
    from tierroute.serving import Router

    edit_manifest(bundle, lambda m: m["model"].update(files=5))
    refused(bundle, "bundle_invalid", r"Bundle {p} is incomplete or damaged \(TypeError")
    router = Router.load(bundle)  # not strict: the tree answers
    assert not router.learned and router.unavailable.code == "bundle_invalid"
