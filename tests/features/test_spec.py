"""FeatureSpec: round trips, fingerprints and the compatibility check's wording."""

from __future__ import annotations

import json
import re

import pytest

from tierroute.errors import FeatureError
from tierroute.features.signals import SignalConfig, SignalExtractor
from tierroute.features.spec import FEATURE_VERSION, FeatureSpec


def make(**overrides) -> FeatureSpec:
    fields = {
        "names": ("a", "b", "c"),
        "version": FEATURE_VERSION,
        "tokenizer": "bpe:o200k_base",
        "signals": {"keywords": ["x", "y"], "cap": 2},
    }
    fields.update(overrides)
    return FeatureSpec(**fields)


def test_defaults():
    spec = FeatureSpec(names=["a"])
    assert spec.names == ("a",)
    assert spec.version == FEATURE_VERSION == 1
    assert spec.tokenizer == "" and dict(spec.signals) == {}
    assert spec.embedding is None and spec.embedding_dims == 0
    assert spec.n_features == 1


def test_to_dict():
    d = make(embedding="all-MiniLM-L6-v2", embedding_dims=384).to_dict()
    assert d == {
        "names": ["a", "b", "c"],
        "version": 1,
        "tokenizer": "bpe:o200k_base",
        "signals": {"keywords": ["x", "y"], "cap": 2},
        "embedding": "all-MiniLM-L6-v2",
        "embedding_dims": 384,
    }
    json.dumps(d)  # JSON-able


def test_to_dict_normalises_tuples_in_signals():
    assert make(signals={"k": ("x", "y")}).to_dict()["signals"] == {"k": ["x", "y"]}


@pytest.mark.parametrize(
    "spec",
    [
        make(),
        make(embedding="minilm", embedding_dims=384),
        FeatureSpec(names=()),
        SignalExtractor().spec,
        SignalExtractor(SignalConfig(tokenizer="approx:chars/4", keywords=("foo",))).spec,
    ],
)
def test_round_trip(spec):
    again = FeatureSpec.from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    assert again.fingerprint() == spec.fingerprint()
    again.check_compatible(spec)
    spec.check_compatible(again)
    # through JSON text too
    via_json = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert via_json.fingerprint() == spec.fingerprint()


def test_from_dict_defaults_for_missing_keys():
    spec = FeatureSpec.from_dict({"names": ["a"]})
    assert spec.names == ("a",)
    assert spec.version == 0
    assert spec.tokenizer == ""
    assert dict(spec.signals) == {}
    assert spec.embedding is None and spec.embedding_dims == 0


def test_fingerprint():
    fp = make().fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert make().fingerprint() == fp
    assert make(signals={"cap": 2, "keywords": ["x", "y"]}).fingerprint() == fp  # key order irrelevant
    assert make(names=("a", "c", "b")).fingerprint() != fp
    assert make(tokenizer="bpe:cl100k_base").fingerprint() != fp
    assert make(version=2).fingerprint() != fp
    assert make(signals={"keywords": ["x"], "cap": 2}).fingerprint() != fp
    assert make(embedding="e", embedding_dims=3).fingerprint() != fp


def test_extractor_spec_fingerprint_stable_and_config_sensitive():
    assert SignalExtractor().spec.fingerprint() == SignalExtractor().spec.fingerprint()
    assert SignalExtractor().spec.fingerprint() != SignalExtractor(SignalConfig(latency_sensitive_ms=100)).spec.fingerprint()


def test_duplicate_names_rejected():
    with pytest.raises(FeatureError, match=r"^FeatureSpec names must be unique; duplicated: \['a', 'b'\]\.$"):
        FeatureSpec(names=("b", "a", "b", "a", "c"))


def test_check_compatible_tokenizer_mismatch():
    message = (
        "Feature spec mismatch on 'tokenizer': the model was trained with 'bpe:o200k_base', "
        "this runtime builds 'bpe:cl100k_base'. Retrain, or serve with the configuration the model was trained with."
    )
    with pytest.raises(FeatureError, match=f"^{re.escape(message)}$"):
        make().check_compatible(make(tokenizer="bpe:cl100k_base"))


def test_check_compatible_extractor_tokenizer_mismatch():
    trained = SignalExtractor().spec
    runtime = SignalExtractor(SignalConfig(tokenizer="bpe:cl100k_base")).spec
    # the tokenizer differs in two places; 'tokenizer' is checked before 'signals'
    with pytest.raises(FeatureError, match=r"^Feature spec mismatch on 'tokenizer': "):
        trained.check_compatible(runtime)


@pytest.mark.parametrize(
    ("other", "key"),
    [
        (make(version=2), "version"),
        (make(embedding="e"), "embedding"),
        (make(embedding_dims=3), "embedding_dims"),
        (make(signals={"keywords": ["x"], "cap": 2}), "signals"),
    ],
)
def test_check_compatible_other_fields(other, key):
    with pytest.raises(FeatureError, match=rf"^Feature spec mismatch on '{key}': the model was trained with "):
        make().check_compatible(other)


def test_check_compatible_names_mismatch():
    message = (
        "Feature spec mismatch on 'names' (missing ['c'], extra ['d', 'e']). Retrain, or serve with the "
        "configuration the model was trained with."
    )
    with pytest.raises(FeatureError, match=f"^{re.escape(message)}$"):
        make().check_compatible(make(names=("a", "b", "d", "e")))


def test_check_compatible_names_order():
    message = (
        "Feature spec mismatch on 'names' (same names, other order). Retrain, or serve with the configuration the model was trained with."
    )
    with pytest.raises(FeatureError, match=f"^{re.escape(message)}$"):
        make().check_compatible(make(names=("c", "b", "a")))


def test_check_compatible_names_lists_at_most_five():
    trained = make(names=tuple(f"n{i}" for i in range(8)))
    with pytest.raises(FeatureError, match=re.escape("(missing ['n0', 'n1', 'n2', 'n3', 'n4'], extra [])")):
        trained.check_compatible(make(names=()))


def test_check_compatible_equal_specs_pass():
    make().check_compatible(make())
    SignalExtractor().spec.check_compatible(SignalExtractor().spec)


@pytest.mark.parametrize(
    ("data", "got"),
    [
        (None, "None (NoneType)"),
        ([], "[] (list)"),
        ("names", "'names' (str)"),
        ({}, "{} (dict)"),
        ({"names": "a,b"}, "{'names': 'a,b'} (dict)"),
        ({"names": ("a",)}, "{'names': ('a',)} (dict)"),
        ({"version": 1}, "{'version': 1} (dict)"),
    ],
)
def test_from_dict_on_garbage(data, got):
    message = (
        f"A FeatureSpec must be an object with a 'names' list; got {got}. The model file is damaged or from another tool: re-export it."
    )
    with pytest.raises(FeatureError, match=f"^{re.escape(message)}$"):
        FeatureSpec.from_dict(data)


def test_from_dict_duplicate_names():
    with pytest.raises(FeatureError, match=r"^FeatureSpec names must be unique"):
        FeatureSpec.from_dict({"names": ["a", "a"]})
