"""Decision stability: each perturbation keeps what it should (and is seeded), flip rates and the
accuracy / cost deltas are counted right, and the evaluate job reports them (table, metrics)."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tierroute.errors import ConfigError
from tierroute.models.catalogue import builtin_catalogue
from tierroute.models.learned import LearnedConfig, LearnedRouter
from tierroute.models.router import RouterParams
from tierroute.pipelines.data.dataset import RoutingData
from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
from tierroute.pipelines.evaluation.evaluate import evaluate, write_report
from tierroute.pipelines.evaluation.stability import (
    PERTURBATIONS,
    StabilityConfig,
    decision_stability,
    flip_summary,
    perturb,
    perturb_requests,
    sample_rows,
    stability_markdown,
    stability_metrics,
)
from tierroute.request import Request

CATALOGUE = builtin_catalogue("article")
CHAT = "system: You are a terse assistant.\nuser: Which queue handles refunds for invoices?\nassistant: Billing.\nuser: And pairing errors?"
CODE = 'Explain what this function returns.\n```\ndef Total(items):\n    return sum(items)\n```\n{"Key": "Value"}'


@pytest.fixture(scope="module")
def data() -> RoutingData:
    frame = pd.DataFrame(list(generate(SyntheticConfig(240, seed=3))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    return RoutingData.from_frame(frame).complete()


@pytest.fixture(scope="module")
def prompts(data: RoutingData) -> list[str]:
    return [r.prompt for r in data.requests[:60]] + [CHAT, CODE, "Pull the order ID: #12345"]


def _words(text: str) -> list[str]:
    return text.split()


def test_whitespace_keeps_the_words(prompts: list[str]) -> None:
    for p in prompts:
        q = perturb(p, "whitespace")
        assert q != p and _words(q) == _words(p)


def test_case_changes_only_the_case_of_prose(prompts: list[str]) -> None:
    for p in prompts:
        q = perturb(p, "case")
        assert q.lower() == p.lower()
    q = perturb(CODE, "case")
    assert q.startswith("explain") and "def Total(items):" in q and '{"Key": "Value"}' in q  # code and JSON untouched
    assert perturb(CHAT, "case").split("\n")[0] == "system: you are a terse assistant."  # the role marker stays


def test_punctuation_touches_only_the_final_mark() -> None:
    assert perturb("Is this billing or technical?", "punctuation") == "Is this billing or technical"
    assert perturb("Pull the order ID: #12345", "punctuation") == "Pull the order ID: #12345."
    assert perturb('Customer wrote: "help"', "punctuation") == 'Customer wrote: "help"'  # a quote: left alone
    assert perturb(CODE, "punctuation") == CODE  # ends in JSON
    for p in ("Summarise this.\n", "Why?"):
        q = perturb(p, "punctuation")
        assert re.sub(r"[.?!]", "", q) == re.sub(r"[.?!]", "", p) and q != p


def test_polite_prefix_keeps_the_prompt(prompts: list[str]) -> None:
    for p in prompts:
        q = perturb(p, "polite_prefix")
        if p.startswith("system: "):
            assert q == CHAT.replace("user: Which", "user: Please, which", 1)
        else:
            assert q.startswith("Please, ") and q[8:].lower() == p.lower() and q[9:] == p[1:]
    assert perturb("I need the invoice total.", "polite_prefix") == "Please, I need the invoice total."


def test_typos_swap_two_adjacent_letters_in_one_or_two_words(prompts: list[str]) -> None:
    for p in prompts:
        q = perturb(p, "typos")
        assert len(q) == len(p) and sorted(q) == sorted(p)
        changed = [(a, b) for a, b in zip(_words(p), _words(q)) if a != b]
        assert 1 <= len(changed) <= 2
        for a, b in changed:
            diff = [k for k in range(len(a)) if a[k] != b[k]]
            assert len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and 0 < diff[0] < len(a) - 2
    assert perturb(CHAT, "typos").split("\n")[1].startswith("user: ")  # role markers are not words to misspell
    assert "def Total(items):" in perturb(CODE, "typos")


def test_system_order_moves_the_system_message_and_keeps_the_rest() -> None:
    q = perturb(CHAT, "system_order")
    blocks, moved = CHAT.split("\n"), q.split("\n")
    assert sorted(moved) == sorted(blocks) and moved[0].startswith("user: ") and moved[1].startswith("system: ")
    assert [b for b in moved if not b.startswith("system: ")] == [b for b in blocks if not b.startswith("system: ")]
    assert perturb("Classify this ticket.", "system_order") == "Classify this ticket."  # no messages: not applicable
    assert perturb("user: hi\nassistant: hello", "system_order") == "user: hi\nassistant: hello"


def test_perturbations_are_seeded(prompts: list[str]) -> None:
    for name in PERTURBATIONS:
        assert [perturb(p, name, seed=4) for p in prompts] == [perturb(p, name, seed=4) for p in prompts]
    assert any(perturb(p, "typos", seed=1) != perturb(p, "typos", seed=2) for p in prompts)


def test_perturbed_requests_keep_schema_and_sla_and_say_which_changed() -> None:
    requests = [Request("Classify this ticket.", ["a", "b"], 150.0), Request("No messages here.")]
    out, changed = perturb_requests(requests, "system_order")
    assert out == requests and not changed.any()
    out, changed = perturb_requests(requests, "polite_prefix")
    assert changed.all() and out[0].output_schema == ["a", "b"] and out[0].latency_sla_ms == 150.0


class ByPrompt:
    """A stand-in router: candidate len(prompt) % 3 (flips under nearly any change) or, with
    ``stable``, by whether the request has a schema (no perturbation changes that)."""

    def __init__(self, stable: bool = False) -> None:
        self.stable = stable

    def decide(self, requests: Any) -> np.ndarray:
        if self.stable:
            return np.array([0 if r.output_schema is not None else 2 for r in requests])
        return np.array([len(r.prompt) % 3 for r in requests])


def test_flip_rates_and_deltas_are_counted_against_the_outcome_table(data: RoutingData) -> None:
    config = StabilityConfig(perturbations=("polite_prefix", "system_order"))
    out = flip_summary(ByPrompt().decide, data.requests, config, correct=data.correct, cost=data.cost, tasks=data.tasks)
    rows = np.arange(data.n_requests)
    base = np.array([len(r.prompt) % 3 for r in data.requests])
    new = (base + 8) % 3  # "Please, " adds 8 characters
    flips = base != new
    prefix = out["per_perturbation"]["polite_prefix"]
    assert prefix["applicable"] == data.n_requests and prefix["flip_rate"] == pytest.approx(flips.mean())
    assert prefix["accuracy_delta"] == pytest.approx(np.mean(data.correct[rows, new] - data.correct[rows, base]))
    assert prefix["cost_per_query_delta"] == pytest.approx(np.mean(data.cost[rows, new] - data.cost[rows, base]))
    assert out["per_perturbation"]["system_order"] == {
        "applicable": 0,
        "flip_rate": None,
        "accuracy_delta": None,
        "cost_per_query_delta": None,
    }
    assert out["flip_rate"] == pytest.approx(flips.mean()) and out["any_flip_rate"] == pytest.approx(flips.mean())
    assert sum(t["requests"] for t in out["per_task"].values()) == data.n_requests
    stable = flip_summary(ByPrompt(stable=True).decide, data.requests, StabilityConfig(), correct=data.correct, cost=data.cost)
    assert stable["flip_rate"] == 0.0 and stable["accuracy_delta"] == 0.0 and stable["any_flip_rate"] == 0.0


def test_decision_stability_samples_and_judges_the_tree_too(data: RoutingData) -> None:
    out = decision_stability(ByPrompt(), data, CATALOGUE, StabilityConfig(max_requests=50, seed=2))
    assert out is not None and out["requests"] == 50 and out["of_requests"] == data.n_requests
    assert 0 < out["learned"]["flip_rate"] <= 1 and 0 <= out["heuristic"]["flip_rate"] <= 1
    assert set(out["learned"]["per_perturbation"]) == set(PERTURBATIONS)
    assert list(sample_rows(data.n_requests, StabilityConfig(max_requests=50, seed=2))) == list(
        sample_rows(data.n_requests, StabilityConfig(max_requests=50, seed=2))
    )
    assert decision_stability(ByPrompt(), data, CATALOGUE, StabilityConfig(max_requests=0)) is None
    metrics = stability_metrics(out)
    assert metrics["stability.flip_rate"] == out["learned"]["flip_rate"]
    assert "stability.heuristic.flip_rate" in metrics and "stability.flip_rate.typos" in metrics
    assert "stability.flip_rate.system_order" not in metrics  # no chat prompt: no figure
    table = stability_markdown(out)
    assert table[0].startswith("Decision stability under meaning-preserving prompt perturbations (50 of ")
    assert any(line.startswith("| system_order | 0 | n/a |") for line in table)


def test_the_tree_flips_at_its_token_threshold() -> None:
    """A structured prompt just under the tree's 500 tokens crosses it with "Please, ": tier1 -> tier2."""
    from tierroute.models.heuristic import HeuristicTree

    tree = HeuristicTree()
    flipped = []
    for n in range(480, 500):
        request = Request("Extract the total. " + "item " * n, {"total": "number"})
        [moved], _ = perturb_requests([request], "polite_prefix")
        flipped.append(tree.route_batch([request]).tiers != tree.route_batch([moved]).tiers)
    assert any(flipped) and not all(flipped)


def test_a_router_answering_the_wrong_number_of_requests_is_refused(data: RoutingData) -> None:
    class Short:
        def decide(self, requests: Any) -> np.ndarray:
            return np.zeros(3, dtype=int)

    with pytest.raises(
        ConfigError,
        match=r"^The learned router returned decisions of shape \(3,\) for 20 requests; expected "
        r"one candidate index per request\. Check its decide\(\)\.$",
    ):
        decision_stability(Short(), data, CATALOGUE, StabilityConfig(max_requests=20))


def test_config_refusals() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^The 'perturbations' parameter of StabilityConfig must name some of \["
        r"'whitespace', .*\]\. Got \['emoji'\] instead \(unknown: \['emoji'\]\)\.$",
    ):
        StabilityConfig(perturbations=("emoji",))
    with pytest.raises(ConfigError, match=r"^The 'max_requests' parameter of StabilityConfig must be an int"):
        StabilityConfig(max_requests=-1)
    with pytest.raises(ConfigError, match=r"^Unknown perturbation 'emoji'; expected one of \['whitespace'"):
        perturb("hi", "emoji")


def test_evaluate_reports_stability_in_metrics_and_report(data: RoutingData, tmp_path) -> None:  # noqa: ANN001
    tiny = LearnedConfig(encoder="none", router=RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1))
    train, test = data.subset(np.arange(160)), data.subset(np.arange(160, data.n_requests))
    router = LearnedRouter(tiny).fit(train, CATALOGUE)
    report = evaluate(router, test, CATALOGUE, stability=StabilityConfig(max_requests=40))
    s = report["stability"]
    assert s["requests"] == 40 and s["config"]["max_requests"] == 40
    assert {"flip_rate", "any_flip_rate", "accuracy_delta", "cost_per_query_delta", "per_perturbation", "per_task"} <= set(s["learned"])
    write_report(report, tmp_path / "evaluation")
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["stability"]["requests"] == 40
    assert "| perturbation | requests changed | learned flip rate |" in (tmp_path / "evaluation" / "report.md").read_text()
    assert evaluate(router, test, CATALOGUE, stability=StabilityConfig(max_requests=0))["stability"] is None
