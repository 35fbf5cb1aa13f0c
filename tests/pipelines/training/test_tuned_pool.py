"""The outcome-tuned encoder in the family selection: an explicit choice (``--encoder tuned``), kept
out of the automatic pool (bench evidence and the reasons in docs/tuned-encoder.md)."""

from __future__ import annotations

import pytest

from tierroute.errors import ConfigError
from tierroute.models.learned import LearnedConfig
from tierroute.pipelines.training.selection import POOL, FamilySpec, default_pool, family_config


def test_tuned_is_not_in_the_auto_pool() -> None:
    assert all(spec.encoder != "tuned" for spec in POOL)
    assert all(spec.encoder != "tuned" for spec in default_pool())


def test_pinning_the_tuned_encoder_searches_every_kind_at_its_width() -> None:
    pool = default_pool("auto", "tuned", 64)
    assert [s.name for s in pool] == [f"{kind}/tuned-64" for kind in dict.fromkeys(s.kind for s in POOL)]
    assert default_pool("knn", "tuned", None) == (FamilySpec("knn", "tuned", 64),)
    assert family_config(LearnedConfig(), FamilySpec("pooled", "tuned", 64)).encoder == "tuned"


def test_a_tuned_family_needs_its_width_and_costs_what_a_static_one_does() -> None:
    with pytest.raises(ConfigError):
        FamilySpec("pooled", "tuned")
    assert FamilySpec("pooled", "tuned", 64).serve_rank() == FamilySpec("pooled", "static", 64).serve_rank()
