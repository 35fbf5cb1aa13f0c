"""SignalExtractor: one code path for the heuristic's signals and the learned router's vector."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tierroute.errors import ConfigError, FeatureError
from tierroute.features.keywords import REASONING_KEYWORDS
from tierroute.features.shape import SHAPE_FEATURE_NAMES
from tierroute.features.signals import RequestSignals, SignalConfig, SignalExtractor
from tierroute.features.spec import FEATURE_VERSION, FeatureSpec
from tierroute.request import Request
from tierroute.schema import SCHEMA_FEATURE_NAMES

COMPACT = {"order_id": "string", "issue_type": "billing | technical | shipping | other"}


@pytest.fixture(scope="module")
def ex() -> SignalExtractor:
    return SignalExtractor()


def test_feature_names_layout(ex):
    names = ex.feature_names
    assert len(names) == len(set(names))
    assert names[0] == "n_tokens"
    assert names[1:10] == tuple(f"kw_{kw.replace(' ', '_')}" for kw in REASONING_KEYWORDS)
    assert names[10:19] == tuple(f"kwb_{kw.replace(' ', '_')}" for kw in REASONING_KEYWORDS)
    assert names[19:26] == ("kw_total", "kw_word_total", "kw_occurrences", "depth_score", "sla_ms", "sla_missing", "latency_sensitive")
    assert names[26 : 26 + len(SCHEMA_FEATURE_NAMES)] == SCHEMA_FEATURE_NAMES
    assert names[-len(SHAPE_FEATURE_NAMES) :] == SHAPE_FEATURE_NAMES
    assert len(names) == 26 + len(SCHEMA_FEATURE_NAMES) + len(SHAPE_FEATURE_NAMES)


@pytest.mark.parametrize(
    "request_",
    [
        Request("hi"),
        Request("", None, 0),
        Request("Compare these and explain why.", COMPACT, 150),
        Request("Pick one.", ["billing", "technical"], 200.0),
        Request("```\nx;\n```\nhttps://a.b 你好？", {"type": "object", "properties": {"a": {"type": "string"}}}, None),
    ],
)
def test_vector_length_and_dtype(ex, request_):
    v = ex.vector(request_)
    assert v.dtype == np.float32
    assert v.shape == (len(ex.feature_names),)
    assert len(ex.signals(request_).as_vector()) == len(ex.feature_names)


def test_signals_of_one_request(ex):
    s = ex.signals(Request("Compare these and explain why.", COMPACT, 150))
    assert isinstance(s, RequestSignals)
    assert s.token_count == ex.counter.count("Compare these and explain why.")
    assert s.keywords.total == 2
    assert s.depth == 3
    assert s.is_structured is True
    assert s.schema.kind == "compact"
    assert s.sla_ms == 150
    assert s.latency_sensitive is True
    assert s.shape.chars == len("Compare these and explain why.")


def test_named_values(ex):
    req = Request("Compare these and explain why.", COMPACT, 150)
    values = dict(zip(ex.feature_names, ex.vector(req).tolist()))
    assert values["n_tokens"] == ex.counter.count(req.prompt)
    assert values["kw_compare"] == 1.0 and values["kw_explain_why"] == 1.0 and values["kw_analyze"] == 0.0
    assert values["kw_total"] == 2.0 and values["kw_word_total"] == 2.0 and values["kw_occurrences"] == 2.0
    assert values["depth_score"] == 3.0
    assert values["sla_ms"] == 150.0 and values["sla_missing"] == 0.0 and values["latency_sensitive"] == 1.0
    assert values["schema_present"] == 1.0 and values["schema_kind_compact"] == 1.0
    assert values["schema_n_fields"] == 2.0
    assert values["shape_chars"] == float(len(req.prompt))


def test_missing_sla_is_nan_and_flagged(ex):
    values = dict(zip(ex.feature_names, ex.vector(Request("hi")).tolist()))
    assert math.isnan(values["sla_ms"])
    assert values["sla_missing"] == 1.0
    assert values["latency_sensitive"] == 0.0
    s = ex.signals(Request("hi"))
    assert s.sla_ms is None and s.latency_sensitive is False


def test_no_schema_features_are_zero(ex):
    values = dict(zip(ex.feature_names, ex.vector(Request("hi")).tolist()))
    assert all(values[name] == 0.0 for name in SCHEMA_FEATURE_NAMES)
    assert ex.signals(Request("hi")).is_structured is False


def test_schema_features_present_for_a_schema(ex):
    values = dict(zip(ex.feature_names, ex.vector(Request("Pick one.", ["billing", "technical"])).tolist()))
    assert values["schema_present"] == 1.0
    assert values["schema_kind_enum"] == 1.0
    assert values["schema_n_enum_values"] == 2.0


def test_malformed_schema_raises_feature_error(ex):
    with pytest.raises(FeatureError, match=r"^Malformed output_schema: "):
        ex.signals(Request("hi", output_schema={}))


@pytest.mark.parametrize(("sla", "sensitive"), [(None, False), (0, True), (199, True), (199.5, True), (200, False), (1e9, False)])
def test_latency_sensitive_threshold(ex, sla, sensitive):
    assert ex.is_latency_sensitive(sla) is sensitive
    assert ex.signals(Request("hi", latency_sla_ms=sla)).latency_sensitive is sensitive


def test_matrix(ex):
    requests = [Request("hi"), Request("Compare.", COMPACT, 10)]
    m = ex.matrix(requests)
    assert m.dtype == np.float32
    assert m.shape == (2, len(ex.feature_names))
    np.testing.assert_array_equal(m[1], ex.vector(requests[1]))
    np.testing.assert_array_equal(m[0], ex.vector(requests[0]))  # NaN in equal positions
    gen = ex.matrix(r for r in requests)
    np.testing.assert_array_equal(gen, m)


def test_matrix_of_nothing(ex):
    m = ex.matrix([])
    assert m.shape == (0, len(ex.feature_names))
    assert m.dtype == np.float32
    assert ex.matrix(iter(())).shape == (0, len(ex.feature_names))


def test_spec_fields(ex):
    spec = ex.spec
    assert isinstance(spec, FeatureSpec)
    assert spec.tokenizer == "bpe:o200k_base"
    assert spec.version == FEATURE_VERSION
    assert spec.names == ex.feature_names
    assert spec.n_features == len(ex.feature_names)
    assert spec.embedding is None and spec.embedding_dims == 0
    assert spec.signals == SignalConfig().to_dict()


def test_config_to_dict():
    assert SignalConfig().to_dict() == {
        "tokenizer": "bpe:o200k_base",
        "keywords": list(REASONING_KEYWORDS),
        "keyword_cap": 2,
        "long_prompt_tokens": 1000,
        "very_long_prompt_tokens": 3000,
        "max_depth": 5,
        "latency_sensitive_ms": 200.0,
    }


def test_config_keywords_list_becomes_tuple():
    assert SignalConfig(keywords=["foo", "bar"]).keywords == ("foo", "bar")


def test_custom_config_changes_names_spec_and_values():
    cfg = SignalConfig(tokenizer="approx:chars/4", keywords=("foo", "bar baz"), latency_sensitive_ms=50)
    ex = SignalExtractor(cfg)
    assert ex.feature_names[1:5] == ("kw_foo", "kw_bar_baz", "kwb_foo", "kwb_bar_baz")
    assert len(ex.feature_names) == len(SignalExtractor().feature_names) - 18 + 4
    assert ex.spec.tokenizer == "approx:chars/4"
    assert ex.spec.fingerprint() != SignalExtractor().spec.fingerprint()
    s = ex.signals(Request("foo " * 10, latency_sla_ms=60))
    assert s.token_count == 10  # ceil(40 / 4)
    assert s.latency_sensitive is False
    assert ex.signals(Request("x", latency_sla_ms=49)).latency_sensitive is True


def test_cl100k_extractor_spec():
    assert SignalExtractor(SignalConfig(tokenizer="bpe:cl100k_base")).spec.tokenizer == "bpe:cl100k_base"


def test_bad_tokenizer_raises_config_error_when_used():
    with pytest.raises(ConfigError, match=r"^Unknown token counter 'nope'"):
        SignalExtractor(SignalConfig(tokenizer="nope")).signals(Request("hi"))


def test_depth_uses_config():
    ex = SignalExtractor(SignalConfig(keyword_cap=1, long_prompt_tokens=5, very_long_prompt_tokens=6, max_depth=3))
    assert ex.depth(5, 0) == 2
    assert ex.depth(1, 6) == 3
    assert ex.depth(1, 7) == 3
    assert ex.depth(0, 7) == 3
