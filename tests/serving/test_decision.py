"""HeuristicPolicy and Decision: the serving runtime's always-available answer."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tierroute.errors import RequestError
from tierroute.features.tokens import BpeTokenCounter
from tierroute.models.catalogue import builtin_catalogue
from tierroute.models.heuristic import HeuristicParams, HeuristicTree
from tierroute.request import Request
from tierroute.serving import DECISION_SCHEMA_VERSION, Decision, HeuristicPolicy

ARTICLE = builtin_catalogue("article")

# one request per tier (the article's tree)
TIER_REQUESTS = {
    "tier1": {"prompt": "Pull the order id.", "output_schema": {"order_id": "string"}},
    "tier2": {"prompt": "Summarize this ticket."},
    "tier3": {"prompt": "Step by step, analyze and compare.", "latency_sla_ms": 150},
}


@pytest.fixture(scope="module")
def policy() -> HeuristicPolicy:
    return HeuristicPolicy()


@pytest.mark.parametrize("tier", ["tier1", "tier2", "tier3"])
def test_routes_to_each_tiers_default_model(policy, tier):
    d = policy.route(TIER_REQUESTS[tier])
    assert isinstance(d, Decision)
    assert d.tier == tier
    assert d.model == ARTICLE.default_model(tier)
    assert ARTICLE.tier_of(d.model) == tier
    assert d.source == "heuristic"
    assert d.node == f"rule{tier[-1]}"
    assert d.reason.startswith(f"rule{tier[-1]}: ")
    assert d.probabilities == {}
    assert d.elapsed_ms >= 0.0


@pytest.mark.parametrize("tier", ["tier1", "tier2", "tier3"])
def test_expected_cost(policy, tier):
    d = policy.route(TIER_REQUESTS[tier])
    tokens = BpeTokenCounter().count(TIER_REQUESTS[tier]["prompt"])
    assert d.expected_cost_usd is not None and d.expected_cost_usd > 0
    assert d.expected_cost_usd == pytest.approx(ARTICLE.candidate(d.model).cost(tokens, 256))


def test_costs_rise_with_tier(policy):
    costs = [policy.route(TIER_REQUESTS[t]).expected_cost_usd for t in ("tier1", "tier2", "tier3")]
    assert costs[0] < costs[1] < costs[2]


def test_expected_output_tokens_parameter():
    req = TIER_REQUESTS["tier2"]
    small = HeuristicPolicy(expected_output_tokens=0).route(req).expected_cost_usd
    big = HeuristicPolicy(expected_output_tokens=1000).route(req).expected_cost_usd
    assert 0 < small < big


def test_to_dict(policy):
    d = policy.route(TIER_REQUESTS["tier1"])
    out = d.to_dict()
    assert list(out) == [
        "schema_version",
        "tier",
        "model",
        "source",
        "reason",
        "node",
        "probabilities",
        "expected_cost_usd",
        "elapsed_ms",
        "signals",
        "fallback",
        "bundle_id",
        "propensity",
        "explored",
        "objective",
    ]
    assert out["fallback"] is None and out["bundle_id"] is None  # the heuristic was asked for: no fallback
    assert out["schema_version"] == DECISION_SCHEMA_VERSION == 1
    assert out["tier"] == "tier1"
    assert out["source"] == "heuristic"
    assert out["probabilities"] == {}
    assert out["signals"] == {
        "token_count": BpeTokenCounter().count(TIER_REQUESTS["tier1"]["prompt"]),
        "depth": 1,
        "is_structured": True,
        "latency_sensitive": False,
    }
    assert out["elapsed_ms"] == round(d.elapsed_ms, 4)


def test_decision_to_dict_defaults():
    d = Decision(tier="tier2", model="m", source="learned", reason="r", probabilities={"m": 0.9}, elapsed_ms=1.234567)
    assert d.to_dict() == {
        "schema_version": 1,
        "tier": "tier2",
        "model": "m",
        "source": "learned",
        "reason": "r",
        "node": None,
        "probabilities": {"m": 0.9},
        "expected_cost_usd": None,
        "elapsed_ms": 1.2346,
        "signals": {},
        "fallback": None,
        "bundle_id": None,
        "propensity": 1.0,
        "explored": False,
        "objective": None,
    }


def test_accepts_request_objects(policy):
    d = policy.route(Request("Pull the order id.", output_schema={"order_id": "string"}))
    assert d.tier == "tier1"


def test_latency_quirk_through_the_policy(policy):
    quick = policy.route({"prompt": "Is this billing or technical?", "latency_sla_ms": 150})
    relaxed = policy.route({"prompt": "Is this billing or technical?"})
    assert (quick.tier, quick.model) == ("tier3", ARTICLE.default_model("tier3"))
    assert (relaxed.tier, relaxed.model) == ("tier2", ARTICLE.default_model("tier2"))


def test_custom_tree():
    policy = HeuristicPolicy(tree=HeuristicTree(HeuristicParams(token_limit=3)))
    assert policy.route(TIER_REQUESTS["tier1"]).tier == "tier2"


@pytest.mark.parametrize("bad", ["just text", {}, {"prompt": 5}, {"prompt": "x", "latency_sla_ms": -1}, {"prompt": "x", "bogus": 1}])
def test_malformed_request_raises_request_error(policy, bad):
    with pytest.raises(RequestError):
        policy.route(bad)


def test_serving_import_and_route_stay_light():
    code = textwrap.dedent(
        """
        import sys
        import tierroute.serving
        from tierroute.serving import HeuristicPolicy
        d = HeuristicPolicy().route({"prompt": "Pull the order id.", "output_schema": {"order_id": "string"}})
        assert d.tier == "tier1", d
        heavy = [m for m in ("torch", "lightgbm", "mlflow", "sklearn", "datasets", "pandas") if m in sys.modules]
        print("heavy:", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "heavy: []"
