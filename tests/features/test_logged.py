"""LoggedRequest (privacy mode: a logged feature vector, no text): the feature assembly uses the
vector under a matching FeatureSpec and refuses another one with both fingerprints named; the
signals and the heuristic tree are replayed from the named signal columns."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tierroute.errors import FeatureError
from tierroute.features.logged import LoggedRequest, is_logged
from tierroute.features.signals import SignalExtractor
from tierroute.models.heuristic import HeuristicTree
from tierroute.models.learned import assembled_spec, request_features
from tierroute.request import Request

TEXTS = [
    Request("Pull the order id from: order #88231 shipped late.", {"order_id": "string"}, 300.0),
    Request("Step by step, analyze and compare these two proofs, then explain why one fails.", None, None),
    Request("Summarise this paragraph in one line. " * 40, None, 5000.0),
]


def _logged(request: Request, extractor: SignalExtractor, spec: str | None = None) -> LoggedRequest:
    """``request`` as privacy mode logs it: its vector (null -> NaN), its spec's fingerprint, no text."""
    vector = tuple(float(v) for v in request_features(extractor, None, [request])[0])
    fingerprint = spec if spec is not None else assembled_spec(extractor, None).fingerprint()
    return LoggedRequest("", None, request.latency_sla_ms, features=vector, feature_spec=fingerprint)


def test_the_feature_assembly_uses_a_logged_vector_in_place_of_text() -> None:
    extractor = SignalExtractor()
    logged = [_logged(r, extractor) for r in TEXTS]
    mixed = [logged[0], TEXTS[1], logged[2]]
    assert is_logged(mixed).tolist() == [True, False, True]
    expected = request_features(extractor, None, TEXTS)
    assert np.array_equal(request_features(extractor, None, mixed), expected, equal_nan=True)
    assert np.array_equal(extractor.matrix(logged), extractor.matrix(TEXTS), equal_nan=True)
    assert math.isnan(logged[1].features[extractor.feature_names.index("sla_ms")])  # no SLA: NaN, as text gives


def test_the_tree_is_replayed_from_the_named_signal_columns() -> None:
    tree = HeuristicTree()
    logged = [_logged(r, tree.extractor) for r in TEXTS]
    assert [tree.extractor.tree_signals(r) for r in logged] == [tree.extractor.tree_signals(r) for r in TEXTS]
    assert tree.route_batch(logged).tiers == tree.route_batch(TEXTS).tiers


def test_a_vector_logged_under_another_spec_is_refused_naming_both_fingerprints() -> None:
    extractor = SignalExtractor()
    other = "f" * 64
    expected = assembled_spec(extractor, None).fingerprint()
    with pytest.raises(FeatureError) as refused:
        request_features(extractor, None, [_logged(TEXTS[0], extractor, other), TEXTS[1], _logged(TEXTS[2], extractor, other)])
    assert str(refused.value) == (
        f"2 feature-only request(s) were logged under FeatureSpec {other}, but this router reads FeatureSpec {expected}: "
        "the logged vectors do not mean the features it reads, so it cannot use them. Retrain from prompt-bearing logs "
        "(serve --log-prompts), or train on vectors logged while serving this same bundle (serve --log-features with "
        "the champion)."
    )


def test_a_short_vector_is_refused() -> None:
    extractor = SignalExtractor()
    short = LoggedRequest("", features=(1.0, 2.0), feature_spec=assembled_spec(extractor, None).fingerprint())
    with pytest.raises(
        FeatureError,
        match=rf"^A logged feature vector holds 2 values; {len(extractor.feature_names)} "
        r"are expected \(FeatureSpec '[0-9a-f]{64}'\)\. The outcome row is damaged",
    ):
        request_features(extractor, None, [short])


def test_stability_passes_a_logged_request_unperturbed() -> None:
    from tierroute.pipelines.evaluation.stability import perturb_requests

    logged = _logged(TEXTS[0], SignalExtractor())
    out, changed = perturb_requests([logged, TEXTS[1]], "polite_prefix")
    assert out[0] is logged and changed.tolist() == [False, True]
