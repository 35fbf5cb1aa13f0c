"""The benchmark's prompts file (tierroute.pipelines.benchmark.prompts): every field read and checked; bad
lines listed with their line number, what arrived and what was expected, never dropped silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tierroute.errors import DataFormatError, DataValidationError
from tierroute.pipelines.benchmark.prompts import PromptItem, load_prompts, parse_prompt


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"id": "q1", "prompt": "What is 2+2?", "reference": 4, "scorer": "numeric"}


def test_a_good_file_is_read_into_frozen_items(tmp_path: Path) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Order status?"}]
    rows = [
        GOOD,
        "",
        {
            "id": 7,
            "messages": messages,
            "reference": {"status": "shipped"},
            "scorer": "json",
            "output_schema": {"status": "shipped | lost"},
            "latency_sla_ms": 500,
            "task": "extract",
            "metadata": {"source": "tickets"},
        },
    ]
    got = load_prompts(write(tmp_path / "p.jsonl", rows))
    assert got.issues == () and [i.id for i in got.items] == ["q1", "7"] and got.scorers == {"numeric", "json"}
    first, second = got.items
    assert first.messages == ({"role": "user", "content": "What is 2+2?"},) and first.prompt == "What is 2+2?"
    assert (first.reference, first.line, first.task, first.latency_sla_ms) == (4.0, 1, None, None)
    assert second.prompt == "system: Be brief.\nuser: Order status?" and second.line == 3
    assert (second.latency_sla_ms, second.task, second.metadata) == (500.0, "extract", {"source": "tickets"})
    with pytest.raises(AttributeError):
        first.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "row,problem",
    [
        ("{not json", "not JSON (Expecting property name enclosed in double quotes at char 1); got '{not json' (str)"),
        ([1, 2], "each line must be a JSON object; got [1, 2] (list)"),
        (
            {**GOOD, "refrence": 4},
            "unknown field 'refrence' (the fields are id, prompt, messages, reference, scorer, "
            "output_schema, latency_sla_ms, task, metadata); got 'refrence'",
        ),
        ({k: v for k, v in GOOD.items() if k != "id"}, "'id' must be a non-empty string or an integer; got no 'id'"),
        ({**GOOD, "id": True}, "'id' must be a non-empty string or an integer; got True (bool)"),
        (
            {**GOOD, "messages": [{"role": "user", "content": "x"}]},
            "a line needs exactly one of 'prompt' (text) or 'messages' (chat messages); got both",
        ),
        ({**GOOD, "prompt": "  "}, "'prompt' must be non-empty text; got '  ' (str)"),
        (
            {"id": "x", "messages": [], "reference": 1, "scorer": "numeric"},
            "'messages' must be a non-empty list of {'role', 'content'} objects; got [] (list)",
        ),
        ({**GOOD, "scorer": "bleu"}, "'scorer' must be one of exact, choice, numeric, f1, json, code, judge; got 'bleu' (str)"),
        (
            {k: v for k, v in GOOD.items() if k != "scorer"},
            "'scorer' must be one of exact, choice, numeric, f1, json, code, judge; got no 'scorer'",
        ),
        ({**GOOD, "reference": "many"}, "a 'numeric' reference must be a finite number such as 42 or \"1,234.5\"; got 'many' (str)"),
        ({**GOOD, "scorer": "exact", "reference": None}, "the 'exact' scorer needs a non-empty 'reference'; got None (NoneType)"),
        ({**GOOD, "latency_sla_ms": -5}, "'latency_sla_ms' must be a number of milliseconds >= 0 (or absent); got -5 (int)"),
        ({**GOOD, "output_schema": []}, "Malformed output_schema: the list is empty; got [] (list)"),
        ({**GOOD, "task": 3}, "'task' must be a string (or absent); got 3 (int)"),
    ],
)
def test_each_bad_line_says_what_arrived_and_what_was_expected(tmp_path: Path, row: Any, problem: str) -> None:
    got = load_prompts(write(tmp_path / "p.jsonl", [GOOD, row]), max_bad=1)
    assert [str(i) for i in got.issues] == [f"line 2: {problem}"] and len(got.items) == 1


def test_duplicate_ids_are_bad_lines(tmp_path: Path) -> None:
    got = load_prompts(write(tmp_path / "p.jsonl", [GOOD, GOOD]), max_bad=1)
    assert str(got.issues[0]) == "line 2: 'id' must be unique; 'q1' was first used on line 1; got 'q1'"


def test_bad_lines_refuse_the_file_unless_tolerated(tmp_path: Path) -> None:
    rows = [GOOD, *({**GOOD, "id": f"b{i}", "scorer": "?"} for i in range(6))]
    path = write(tmp_path / "p.jsonl", rows)
    with pytest.raises(
        DataValidationError,
        match=(
            r"^6 bad line\(s\) in prompts file '.*p\.jsonl' \(at most 0 allowed\): line 2: 'scorer' must be one of .*; "
            r"line 6: .*; \.\.\.\. Fix those lines, or pass --max-bad-prompts N to skip them\.$"
        ),
    ):
        load_prompts(path)
    assert len(load_prompts(path, max_bad=6).issues) == 6


def test_a_file_without_any_usable_prompt_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"no usable prompt in '.*p\.jsonl': 1 bad line\(s\): line 1: not JSON"):
        load_prompts(write(tmp_path / "p.jsonl", ["nope"]), max_bad=5)
    with pytest.raises(DataValidationError, match=r"Prompts file '.*empty\.jsonl' holds no prompts\. Write one JSON object"):
        load_prompts(write(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(DataFormatError, match=r"Prompts file '.*missing\.jsonl' not found\. Pass the JSONL file"):
        load_prompts(tmp_path / "missing.jsonl")


def test_references_are_normalised_for_their_scorer(tmp_path: Path) -> None:
    rows = [
        {"id": "c", "prompt": "p", "reference": "(b)", "scorer": "choice"},
        {"id": "j", "prompt": "p", "reference": '{"a": 1}', "scorer": "json"},
        {"id": "g", "prompt": "p", "scorer": "judge"},
        {"id": "s", "prompt": "p", "scorer": "json", "output_schema": ["yes", "no"]},
    ]
    items = {i.id: i for i in load_prompts(write(tmp_path / "p.jsonl", rows)).items}
    assert (items["c"].reference, items["j"].reference, items["g"].reference, items["s"].reference) == ("B", {"a": 1}, None, None)


def test_parse_prompt_raises_with_the_same_wording() -> None:
    assert isinstance(parse_prompt(GOOD, 1), PromptItem)
    with pytest.raises(DataValidationError, match=r"^line 4: 'scorer' must be one of .*; got 'x' \(str\)\. Fix that prompt\.$"):
        parse_prompt({**GOOD, "scorer": "x"}, 4)


def test_a_line_separator_inside_a_json_string_does_not_split_the_line(tmp_path: Path) -> None:
    row = {**GOOD, "prompt": "first\u2028second\x85third"}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n" + json.dumps({**GOOD, "id": "q2"}) + "\n", encoding="utf-8")
    got = load_prompts(path)
    assert got.issues == () and got.items[0].prompt == "first\u2028second\x85third" and got.items[1].line == 2
