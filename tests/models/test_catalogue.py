"""Candidate catalogues: the builtins, the lookups, and every validation message."""

from __future__ import annotations

import ast
import copy
import csv
import dataclasses
import itertools
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from tierroute.errors import CatalogueError
from tierroute.models.catalogue import BUILTIN_CATALOGUES, Candidate, Catalogue, builtin_catalogue, find_builtin_for, load_catalogue

ROUTERBENCH_MODELS = {
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "claude-v1",
    "claude-v2",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
}
TIERS = ("tier1", "tier2", "tier3")

GOOD: dict[str, Any] = {
    "schema_version": 1,
    "name": "tiny",
    "description": "for tests",
    "tiers": ["tier1", "tier2", "tier3"],
    "candidates": [
        {"model": "a", "tier": "tier1", "input_per_1k": 0.002, "output_per_1k": 0.002},
        {"model": "b", "tier": "tier1", "input_per_1k": 0.001, "output_per_1k": 0.002},
        {
            "model": "c",
            "tier": "tier3",
            "input_per_1k": 0.01,
            "output_per_1k": 0.03,
            "p95_latency_ms": 900,
            "default": True,
            "base_url": "http://localhost:8000/v1",
            "api_key_env": "C_KEY",
        },
    ],
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for these tests (stdlib reads TOML but does not write it)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if k != "candidates" or v == []]
    for cand in data.get("candidates") or []:
        lines.append("[[candidates]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in cand.items()]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "cat.toml"
    path.write_text(data if isinstance(data, str) else to_toml(data), encoding="utf-8")
    return path


# --- builtins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_CATALOGUES)
def test_every_builtin_loads_with_three_ordered_tiers(name: str) -> None:
    cat = load_catalogue(name)
    assert cat is builtin_catalogue(name)
    assert (cat.name, cat.source, cat.tiers) == (name, f"builtin:{name}", TIERS)
    assert cat.description
    assert [cat.tier_rank(t) for t in TIERS] == [0, 1, 2]
    # every priced tier is dearer than the one below it, at its default model, for a 600/100 request
    priced = [cat.candidate(cat.default_model(t)).cost(600, 100) for t in TIERS if cat.models_in_tier(t)]
    assert priced == sorted(priced) and len(set(priced)) == len(priced)


def test_routerbench_has_exactly_the_data_models_by_price_tier() -> None:
    cat = builtin_catalogue("routerbench")
    assert {c.model for c in cat.candidates} == ROUTERBENCH_MODELS
    assert {c.model for c in cat.models_in_tier("tier3")} == {"claude-v1", "claude-v2", "gpt-4-1106-preview"}
    assert {c.model for c in cat.models_in_tier("tier2")} == {"gpt-3.5-turbo-1106", "claude-instant-v1"}
    assert all(c.p95_latency_ms is None for c in cat.candidates)  # the data has no latency
    gpt4 = cat.candidate("gpt-4-1106-preview")
    assert (gpt4.input_per_1k, gpt4.output_per_1k) == (0.01, 0.03)
    assert gpt4.cost(533, 0) == pytest.approx(0.00533)  # an ARC row: 533 prompt tokens cost $0.00533
    assert [cat.default_model(t) for t in TIERS] == ["mistralai/mixtral-8x7b-chat", "gpt-3.5-turbo-1106", "gpt-4-1106-preview"]
    tier1 = [c.model for c in cat.models_in_tier("tier1")]
    assert tier1[0] == "mistralai/mistral-7b-chat" and tier1[-1] == "meta/llama-2-70b-chat"


def test_routellm_pair_leaves_tier2_empty() -> None:
    cat = builtin_catalogue("routellm")
    assert {c.model: c.tier for c in cat.candidates} == {"gpt-4-1106-preview": "tier3", "mistralai/Mixtral-8x7B-Instruct-v0.1": "tier1"}
    assert cat.models_in_tier("tier2") == ()
    with pytest.raises(CatalogueError, match=r"tier 'tier2' of catalogue 'routellm' has no candidates; add a"):
        cat.default_model("tier2")


def test_article_matches_the_articles_per_request_figures() -> None:
    cat = builtin_catalogue("article")
    assert [cat.default_model(t) for t in TIERS] == ["claude-3-haiku", "gpt-4o-mini", "gpt-4o"]
    ranges = {"tier1": (0.0025, 0.0035), "tier2": (0.01, 0.03), "tier3": (0.10, 0.15)}
    for cand in cat.candidates:
        low, high = ranges[cand.tier]
        assert low <= cand.cost(600, 100) <= high, cand.model
        assert cand.p95_latency_ms is not None
    assert cat.candidate("llama-3-70b-q4").cost(600, 100) == pytest.approx(0.003)
    assert cat.candidate("gpt-4o").cost(600, 100) == pytest.approx(0.12)
    assert {"claude-3-5-sonnet", "gemini-1.5-pro"} <= {c.model for c in cat.models_in_tier("tier3")}


# --- the API ----------------------------------------------------------------------------------


def test_cost_is_tokens_times_price_per_1k() -> None:
    cand = Candidate("m", "tier1", 0.01, 0.03)
    assert cand.cost(1000, 2000) == pytest.approx(0.07)
    assert cand.cost(0, 0) == 0.0
    with pytest.raises(CatalogueError, match=r"cost of 'm': token counts must be >= 0; got input_tokens=-1"):
        cand.cost(-1, 10)


def test_lookups_on_a_file_catalogue(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cat = load_catalogue(path)
    assert cat.source == str(path) and cat.name == "tiny"
    assert load_catalogue(str(path)) == cat
    assert cat.tier_of("c") == "tier3"
    c = cat.candidate("c")
    assert (c.p95_latency_ms, c.default, c.base_url, c.api_key_env) == (900.0, True, "http://localhost:8000/v1", "C_KEY")
    assert isinstance(cat.candidate("a").input_per_1k, float)
    assert [m.model for m in cat.models_in_tier("tier1")] == ["b", "a"]  # cheapest first
    assert cat.default_model("tier1") == "b"  # none marked: the cheapest
    assert cat.default_model("tier3") == "c"  # marked
    assert cat.models_in_tier("tier2") == ()
    with pytest.raises(CatalogueError, match=r"^tier 'tier2' of catalogue 'tiny' has no candidates"):
        cat.default_model("tier2")
    with pytest.raises(CatalogueError, match=r"^unknown tier 'tier9'; this catalogue has tier1, tier2, tier3\."):
        cat.tier_rank("tier9")
    with pytest.raises(CatalogueError, match=r"^unknown tier 'tier9'"):
        cat.models_in_tier("tier9")
    with pytest.raises(CatalogueError, match=r"^unknown model 'zz'; catalogue 'tiny' has a, b, c\. Use one of"):
        cat.candidate("zz")
    with pytest.raises(CatalogueError, match=r"^unknown model 'zz'"):
        cat.tier_of("zz")
    assert cat.covers(["a", "c"]) and not cat.covers(["a", "zz"])
    assert cat.missing(["zz", "a", "yy", "zz"]) == ["zz", "yy"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cat.name = "other"  # type: ignore[misc]


def test_to_dict_is_json_and_round_trips(tmp_path: Path) -> None:
    cat = load_catalogue(write(tmp_path, GOOD))
    data = json.loads(json.dumps(cat.to_dict()))
    assert data["schema_version"] == 1 and data["tiers"] == list(TIERS)
    assert data["candidates"][2]["p95_latency_ms"] == 900.0 and data["candidates"][0]["p95_latency_ms"] is None
    assert Catalogue.from_dict(data) == cat
    assert Catalogue.from_dict(data).source == cat.source


def test_find_builtin_for() -> None:
    assert find_builtin_for(sorted(ROUTERBENCH_MODELS)).name == "routerbench"  # type: ignore[union-attr]
    assert find_builtin_for(m for m in ["gpt-4o", "llama-3-70b-q4"]).name == "article"  # type: ignore[union-attr]
    pair = ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert find_builtin_for(pair).name == "routellm"  # type: ignore[union-attr]
    assert find_builtin_for(["gpt-4-1106-preview"]).name == "routerbench"  # type: ignore[union-attr]  # first wins
    assert find_builtin_for(["gpt-4o", "claude-v2"]) is None
    assert find_builtin_for([]) is None


def test_programmatic_catalogue_is_validated_too() -> None:
    with pytest.raises(CatalogueError, match=r"^candidate 'm': 'input_per_1k' must be a finite number >= 0"):
        Candidate("m", "tier1", -0.1, 0.0)
    with pytest.raises(CatalogueError, match=r"^candidate 'm': 'p95_latency_ms' must be .*got inf \(float\)"):
        Candidate("m", "tier1", 0.1, 0.1, p95_latency_ms=float("inf"))
    small = Candidate("small", "tier1", 0.001, 0.002)
    with pytest.raises(CatalogueError, match=r"^catalogue 'x': candidates\[0\] \(model 'small'\): tier must be one of"):
        Catalogue("x", ("low", "high"), (small,))
    with pytest.raises(CatalogueError, match=r"^catalogue 'x': candidates\[1\] must be a Candidate; got 'nope' \(str\)"):
        Catalogue("x", ("tier1",), (small, "nope"))  # type: ignore[arg-type]
    cat = Catalogue("x", ["tier1"], [small])  # type: ignore[arg-type]
    assert cat.tiers == ("tier1",) and cat.candidates == (small,)


# --- validation of files: every message names the file, the entry, what came and what to do ---


def _without(key: str, index: int | None = None):
    def change(d: dict[str, Any]) -> None:
        del (d if index is None else d["candidates"][index])[key]

    return change


def _with(key: str, value: Any, index: int | None = None):
    def change(d: dict[str, Any]) -> None:
        (d if index is None else d["candidates"][index])[key] = value

    return change


CASES = [
    (_without("schema_version"), r"schema_version must be 1; got nothing \(the key is missing\)\. Put schema_version = 1"),
    (_with("schema_version", 2), r"schema_version must be 1; got 2 \(int\)\. Put schema_version = 1 at the top"),
    (_with("schema_version", "1"), r"schema_version must be 1; got '1' \(str\)"),
    (_without("name"), r"'name' is required; got nothing \(the key is missing\)\. Add name = \"\.\.\.\""),
    (_with("name", " "), r"'name' must be a non-empty string; got ' ' \(str\)"),
    (_without("tiers"), r"'tiers' is required; got nothing \(the key is missing\)\. Add tiers = \[\"tier1\""),
    (_with("tiers", []), r"'tiers' must be a non-empty list of names; got \[\] \(list\)\. Write tiers = \["),
    (_with("tiers", "tier1"), r"'tiers' must be a non-empty list of names; got 'tier1' \(str\)"),
    (_with("tiers", ["tier1", "tier1", "tier3"]), r"each tier must appear once in 'tiers'; got 'tier1' 2 times\. Remove"),
    (_with("tiers", ["tier1", 2, "tier3"]), r"every tier must be a non-empty string; got 2 \(int\)"),
    (_with("candidates", []), r"'candidates' must be a non-empty array of \[\[candidates\]\] tables; got \[\] \(list\)"),
    (_without("candidates"), r"'candidates' must be a non-empty array .*; got nothing \(the key is missing\)"),
    (_with("colour", "red"), r"top-level keys are schema_version, .*; got unknown key 'colour'\. Check its spelling"),
    (_without("model", 1), r"candidates\[1\]: 'model' must be a non-empty string; got nothing \(the key is missing\)"),
    (_without("tier", 1), r"candidates\[1\] \(model 'b'\): 'tier' must be a non-empty string; got nothing"),
    (
        _without("input_per_1k", 1),
        r"candidates\[1\] \(model 'b'\): 'input_per_1k' must be a finite number >= 0 \(USD per 1k input tokens\); "
        r"got nothing \(the key is missing\)\. Set input_per_1k = <number>\.",
    ),
    (_without("output_per_1k", 0), r"candidates\[0\] \(model 'a'\): 'output_per_1k' must be .*USD per 1k output"),
    (_with("input_per_1k", -0.001, 0), r"'input_per_1k' must be a finite number >= 0 .*; got -0\.001 \(float\)"),
    (_with("output_per_1k", "0.002", 0), r"'output_per_1k' must be a finite number >= 0 .*; got '0\.002' \(str\)"),
    (_with("input_per_1k", True, 0), r"'input_per_1k' must be a finite number >= 0 .*; got True \(bool\)"),
    (_with("p95_latency_ms", -5, 0), r"'p95_latency_ms' must be a finite number >= 0 \(milliseconds\); got -5 \(int\)"),
    (_with("p95_latency_ms", "fast", 0), r"'p95_latency_ms' must be .*; got 'fast' \(str\)"),
    (
        _with("tier", "tier9", 1),
        r"candidates\[1\] \(model 'b'\): tier must be one of 'tiers' \(tier1, tier2, tier3\); got 'tier9'\. Fix it",
    ),
    (
        _with("model", "a", 1),
        r"candidates\[1\] \(model 'a'\): model ids must be unique; got a second entry for it "
        r"\(the first is candidates\[0\]\)\. Remove or rename",
    ),
    (
        lambda d: [c.update(default=True) for c in d["candidates"][:2]],
        r"candidates\[1\] \(model 'b'\): at most one default = true per tier; got a second default for 'tier1' "
        r"\(the first is candidates\[0\] 'a'\)\. Keep default = true on one",
    ),
    (_with("default", "yes", 0), r"candidates\[0\] \(model 'a'\): 'default' must be true or false; got 'yes' \(str\)"),
    (_with("base_url", "", 0), r"'base_url' must be a non-empty string when given; got '' \(str\)"),
    (
        _with("input_per_1K", 0.1, 0),
        r"candidates\[0\] \(model 'a'\): candidate keys are model, .*; "
        r"got unknown key 'input_per_1K'\. Check its spelling",
    ),
]


@pytest.mark.parametrize(("change", "pattern"), CASES, ids=[p[:40] for _, p in CASES])
def test_each_validation_error_names_the_file(tmp_path: Path, change, pattern: str) -> None:
    data = copy.deepcopy(GOOD)
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(CatalogueError, match=rf"^catalogue {re.escape(str(path))}: .*{pattern}"):
        load_catalogue(path)


def test_a_candidate_that_is_not_a_table(tmp_path: Path) -> None:
    text = to_toml({k: v for k, v in GOOD.items() if k != "candidates"}) + "candidates = [1]\n"
    with pytest.raises(CatalogueError, match=r"candidates\[0\] must be a table; got 1 \(int\)"):
        load_catalogue(write(tmp_path, text))


def test_invalid_toml_carries_tomllibs_message(tmp_path: Path) -> None:
    path = write(tmp_path, 'schema_version = 1\nname = "x\n')
    expected = rf"^catalogue {re.escape(str(path))} is not valid TOML: .*line 2.*\. Fix the syntax; the builtin files"
    with pytest.raises(CatalogueError, match=expected):
        load_catalogue(path)


def test_missing_file_suggests_the_builtins(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    expected = rf"^catalogue file {re.escape(repr(str(path)))} not found\. .*: article, routerbench, routellm\.$"
    with pytest.raises(CatalogueError, match=expected):
        load_catalogue(path)
    with pytest.raises(CatalogueError, match=r"^catalogue file 'artcle' not found\."):
        load_catalogue("artcle")
    with pytest.raises(CatalogueError, match=r"^no builtin catalogue 'artcle'; the builtins are article, routerbench"):
        builtin_catalogue("artcle")


def test_a_directory_is_not_a_catalogue(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"could not be read as text"):
        load_catalogue(tmp_path)


# --- the routerbench prices reproduce the data's per-call costs -------------------------------


@pytest.mark.shared_data
def test_routerbench_prices_reproduce_the_recorded_costs(shared_data: Path) -> None:
    from tierroute.features.tokens import BpeTokenCounter

    tok = BpeTokenCounter("o200k_base")
    cat = builtin_catalogue("routerbench")

    def text(cell: str) -> str:
        return "\n".join(map(str, ast.literal_eval(cell))) if cell else ""

    csv.field_size_limit(sys.maxsize)
    ratios: dict[str, list[float]] = {m: [] for m in ROUTERBENCH_MODELS}
    with (shared_data / "routerbench" / "routerbench_zs" / "mbpp_test.csv").open(newline="", encoding="utf-8") as fh:
        for row in itertools.islice(csv.DictReader(fh), 40):
            n_in = tok.count(text(row["prompt"]))
            for model in ROUTERBENCH_MODELS:
                predicted = cat.candidate(model).cost(n_in, tok.count(text(row[f"{model}|model_response"])))
                ratios[model].append(float(row[f"{model}|total_cost"]) / predicted)
    medians = {m: statistics.median(r) for m, r in ratios.items()}
    assert all(0.97 < v < 1.03 for v in medians.values()), medians


def test_serving_model_falls_back_to_the_nearest_tier_above() -> None:
    cat = builtin_catalogue("routellm")  # tier2 is empty
    assert cat.serving_model("tier1") == cat.default_model("tier1")
    assert cat.serving_model("tier2") == cat.default_model("tier3")
    assert cat.serving_model("tier3") == "gpt-4-1106-preview"
    with pytest.raises(CatalogueError, match=r"unknown tier 'tier9'"):
        cat.serving_model("tier9")


@pytest.mark.parametrize("name", ["article", "routerbench", "routellm"])
def test_to_toml_reads_back_as_the_same_catalogue(name: str, tmp_path: Path) -> None:
    from dataclasses import replace

    from tierroute.models.catalogue import Catalogue, builtin_catalogue, load_catalogue

    builtin = builtin_catalogue(name)
    first = replace(builtin.candidates[0], base_url='http://127.0.0.1:9/v1 "quoted"', api_key_env="KEY")
    changed = Catalogue(builtin.name, builtin.tiers, (first, *builtin.candidates[1:]), description="a \\ and \u00e9")
    path = tmp_path / "out.toml"
    path.write_text(changed.to_toml(), encoding="utf-8")
    again = load_catalogue(path)
    assert again.candidates == changed.candidates and again.tiers == changed.tiers
    assert (again.name, again.description) == (changed.name, changed.description)


def test_a_catalogue_read_off_costs_tiers_by_cost_and_defaults_to_the_most_accurate() -> None:
    from tierroute.models.catalogue import catalogue_from_costs

    costs = {"a": 0.001, "b": 0.002, "c": 0.003, "d": 0.010, "e": 0.011, "f": 0.050}
    accuracy = {"a": 0.5, "b": 0.6, "c": 0.55, "d": 0.7, "e": 0.65, "f": 0.9}
    cat = catalogue_from_costs(costs, accuracy, 300.0, 100)
    assert [cat.tier_of(m) for m in "abcdef"] == ["tier1", "tier1", "tier2", "tier2", "tier3", "tier3"]
    assert [cat.default_model(t) for t in cat.tiers] == ["b", "d", "f"]  # each tier's most accurate
    assert all(abs(cat.candidate(m).cost(300, 100) - c) < 1e-12 for m, c in costs.items())  # the mean call's cost
    pair = catalogue_from_costs({"weak": 0.06, "strong": 1.0}, {"weak": 0.67, "strong": 0.81}, 50.0)
    assert (pair.tier_of("weak"), pair.tier_of("strong")) == ("tier1", "tier3")
    with pytest.raises(CatalogueError, match=r"^A catalogue read off the data needs a finite cost >= 0 per call for each model"):
        catalogue_from_costs({"a": float("nan")}, {}, 10.0)
