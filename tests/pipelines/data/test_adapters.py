"""Outcome-data adapters on small slices of the real files (copied into tmp_path) and on
hand-written generic files: RouterBench (CSV and pickle), RouteLLM (MMLU, GSM8K), generic outcomes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tierroute.errors import DataFormatError
from tierroute.features.tokens import BpeTokenCounter
from tierroute.models.catalogue import builtin_catalogue
from tierroute.pipelines.data.adapters import ADAPTERS, FORMATS, detect_format
from tierroute.pipelines.data.adapters.base import RawRow, iter_csv, read_csv_header
from tierroute.pipelines.data.adapters.outcomes import OutcomesAdapter
from tierroute.pipelines.data.adapters.routellm import RouteLLMAdapter, load_contaminated
from tierroute.pipelines.data.adapters.routerbench import RouterBenchAdapter, routerbench_models
from tierroute.pipelines.data.records import OUTCOME_FIELDS, OutcomeValidator, RowIssue

ROUTERBENCH_MODELS = [
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
]
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT4 = "gpt-4-1106-preview"
N_ROWS = 4


def csv_slice(src: Path, dest: Path, n: int = N_ROWS) -> list[dict[str, str]]:
    """Copy the header and the first ``n`` records of ``src`` (records may span lines) to ``dest``;
    return the records as dicts."""
    csv.field_size_limit(1 << 30)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with src.open(newline="", encoding="utf-8") as fh, dest.open("w", newline="", encoding="utf-8") as out:
        reader, writer = csv.reader(fh), csv.writer(out)
        header = next(reader)
        writer.writerow(header)
        for _, row in zip(range(n), reader):
            writer.writerow(row)
            rows.append(dict(zip(header, row)))
    return rows


def all_adapters() -> dict[str, Any]:
    return {name: cls() for name, cls in ADAPTERS.items()}


def validated(rows: list[RawRow]) -> list[dict[str, Any]]:
    validator = OutcomeValidator()
    out = []
    for raw in rows:
        assert raw.issue is None, raw
        record = validator.validate(raw.fields, raw.where)
        assert isinstance(record, dict), (raw, record)
        out.append(record)
    return out


# --- RouterBench --------------------------------------------------------------------------------


@pytest.fixture
def mbpp_slice(shared_data: Path, tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    dest = tmp_path / "rb" / "mbpp_test.csv"
    rows = csv_slice(shared_data / "routerbench" / "routerbench_zs" / "mbpp_test.csv", dest)
    return dest, rows


@pytest.mark.shared_data
def test_routerbench_csv_melts_to_long_rows(mbpp_slice: tuple[Path, list[dict[str, str]]]) -> None:
    path, source = mbpp_slice
    assert routerbench_models(read_csv_header(path)) == ROUTERBENCH_MODELS
    rows = list(RouterBenchAdapter().rows(path))
    assert len(rows) == N_ROWS * 11
    records = validated(rows)
    for i, src in enumerate(source):
        mine = records[i * 11 : (i + 1) * 11]
        assert [r["model"] for r in mine] == ROUTERBENCH_MODELS
        assert {r["request_id"] for r in mine} == {src["sample_id"]}
        assert {r["task"] for r in mine} == {"mbpp"}
        # the prompt is unwrapped from the stringified list
        assert src["prompt"].startswith("['")
        assert all(r["prompt"] == mine[0]["prompt"] and not r["prompt"].startswith("[") for r in mine)
        for r in mine:
            assert r["cost_usd"] == float(src[r["model"] + "|total_cost"]) > 0
            assert r["quality"] == float(src[r["model"]]) and r["quality"] in (0.0, 1.0)
            assert r["correct"] is (r["quality"] == 1.0)
    first = records[0]
    assert first["request_id"] == "mbpp.dev.1"
    assert first["prompt"] == "Write a python function to identify non-prime numbers."
    assert rows[0].where == "mbpp_test.csv:2 [WizardLM/WizardLM-13B-V1.2]"  # the header is line 1
    assert re.fullmatch(r"mbpp_test\.csv:\d+ \[WizardLM/WizardLM-13B-V1\.2\]", rows[11].where)


def test_iter_csv_line_numbers_are_the_rows_start_lines(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text('a,b\n1,2\n"x\ny",3\n4,5\n', encoding="utf-8")
    rows = list(iter_csv(path))
    assert [r.row for r in rows] == [{"a": "1", "b": "2"}, {"a": "x\ny", "b": "3"}, {"a": "4", "b": "5"}]
    assert [r.line for r in rows] == [2, 3, 5] and {r.issue for r in rows} == {None}


@pytest.mark.shared_data
def test_routerbench_pickle_gives_the_same_rows_as_the_csv(mbpp_slice: tuple[Path, list[dict[str, str]]], tmp_path: Path) -> None:
    import pandas as pd

    path, _ = mbpp_slice
    pkl = tmp_path / "routerbench_0shot.pkl"
    frame = pd.read_csv(path)
    assert "sample_id" in frame.columns and "gpt-4-1106-preview|total_cost" in frame.columns
    frame.to_pickle(pkl)
    adapter = RouterBenchAdapter()
    from_csv, from_pkl = list(adapter.rows(path)), list(adapter.rows(pkl))
    assert len(from_pkl) == N_ROWS * 11
    assert [r.fields for r in from_pkl] == [r.fields for r in from_csv]
    assert from_pkl[0].where == f"{pkl.name}:row 0 [WizardLM/WizardLM-13B-V1.2]"
    assert validated(from_pkl) == validated(from_csv)


@pytest.mark.shared_data
def test_routerbench_sniffing(mbpp_slice: tuple[Path, list[dict[str, str]]], tmp_path: Path) -> None:
    import pandas as pd

    path, _ = mbpp_slice
    pkl = tmp_path / "x.pickle"
    pd.read_csv(path).to_pickle(pkl)
    adapters = all_adapters()
    assert detect_format(path, adapters) == "routerbench"
    assert detect_format(pkl, adapters) == "routerbench"
    assert not RouteLLMAdapter().sniff(path)  # a prompt column but the |total_cost columns say RouterBench
    assert not OutcomesAdapter().sniff(path)


def test_routerbench_prompt_unwrapping_and_empty_scores(tmp_path: Path) -> None:
    path = tmp_path / "rb.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "",
                "sample_id",
                "prompt",
                "eval_name",
                "m1",
                "m2",
                "m1|total_cost",
                "m2|total_cost",
                "m1|model_response",
                "m2|model_response",
                "oracle_model_to_route_to",
            ]
        )
        w.writerow(["0", "t.1", "['line one', 'line two']", "toy", "1.0", "", "0.5", "0.25", "['a']", "['b']", "m1"])
        w.writerow(["1", "t.2", "plain text", "toy", "nan", "0.0", "0.1", "x", "['a']", "['b']", "m1"])
    rows = list(RouterBenchAdapter().rows(path))
    assert [r.fields["model"] for r in rows] == ["m1", "m2", "m1", "m2"]
    assert rows[0].fields["prompt"] == "line one\nline two"
    assert rows[2].fields["prompt"] == "plain text"
    assert rows[0].fields["quality"] == 1.0 and rows[0].fields["cost_usd"] == 0.5
    validator = OutcomeValidator()
    results = [validator.validate(r.fields, r.where) for r in rows]
    assert isinstance(results[0], dict)
    assert isinstance(results[1], RowIssue) and results[1].reason == "quality_nan"  # empty score = no score
    assert isinstance(results[2], RowIssue) and results[2].reason == "quality_nan"
    assert isinstance(results[3], RowIssue) and results[3].reason == "wrong_type"  # cost "x"


# --- RouteLLM -----------------------------------------------------------------------------------


@pytest.fixture
def mmlu_slice(shared_data: Path, tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    dest = tmp_path / "mmlu" / "responses" / "mmlu_anatomy.csv"
    return dest, csv_slice(shared_data / "routellm" / "mmlu" / "responses" / "mmlu_anatomy.csv", dest)


@pytest.fixture
def gsm8k_slice(shared_data: Path, tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    dest = tmp_path / "gsm8k" / "gsm8k_responses.csv"
    return dest, csv_slice(shared_data / "routellm" / "gsm8k" / "gsm8k_responses.csv", dest)


@pytest.mark.shared_data
def test_routellm_mmlu_rows_are_priced_from_the_catalogue(mmlu_slice: tuple[Path, list[dict[str, str]]]) -> None:
    path, source = mmlu_slice
    adapter = RouteLLMAdapter()
    assert adapter.sniff(path)
    assert detect_format(path, all_adapters()) == "routellm"
    rows = list(adapter.rows(path))
    assert len(rows) == 2 * N_ROWS
    records = validated(rows)
    catalogue, counter = builtin_catalogue("routellm"), BpeTokenCounter()
    for i, src in enumerate(source):
        pair = records[2 * i : 2 * i + 2]
        assert [r["model"] for r in pair] == [MIXTRAL, GPT4]
        assert {r["task"] for r in pair} == {"mmlu"}
        assert pair[0]["request_id"] == pair[1]["request_id"]
        assert pair[0]["request_id"].startswith("mmlu:") and len(pair[0]["request_id"]) == len("mmlu:") + 16
        for r in pair:
            assert r["prompt"] == src["prompt"]
            assert r["correct"] is (src[r["model"]] == "True")
            assert r["quality"] == (1.0 if r["correct"] else 0.0)
            # no response stored: 1 output token (the answer letter)
            expected = catalogue.candidate(r["model"]).cost(counter.count(src["prompt"]), 1)
            assert r["cost_usd"] == pytest.approx(expected) and r["cost_usd"] > 0
        assert pair[1]["cost_usd"] > pair[0]["cost_usd"]  # GPT-4 costs more than Mixtral
    assert rows[1].where.endswith(f" [{GPT4}]")


@pytest.mark.shared_data
def test_routellm_gsm8k_costs_count_the_response_tokens(
    gsm8k_slice: tuple[Path, list[dict[str, str]]], mmlu_slice: tuple[Path, list[dict[str, str]]]
) -> None:
    path, source = gsm8k_slice
    adapter = RouteLLMAdapter()
    assert detect_format(path, all_adapters()) == "routellm"
    gsm = validated(list(adapter.rows(path)))
    mmlu = validated(list(adapter.rows(mmlu_slice[0])))
    catalogue, counter = builtin_catalogue("routellm"), BpeTokenCounter()
    assert {r["task"] for r in gsm} == {"gsm8k"}
    assert all(r["request_id"].startswith("gsm8k:") for r in gsm)
    for i, src in enumerate(source):
        for r in gsm[2 * i : 2 * i + 2]:
            response = src[r["model"] + "_response"]
            assert response.strip()
            expected = catalogue.candidate(r["model"]).cost(counter.count(src["prompt"]), counter.count(response))
            assert r["cost_usd"] == pytest.approx(expected)
            # the response's output tokens cost more than the one answer token MMLU is priced at
            assert r["cost_usd"] > catalogue.candidate(r["model"]).cost(counter.count(src["prompt"]), 1)
    for model in (MIXTRAL, GPT4):
        gsm_cost = [r["cost_usd"] for r in gsm if r["model"] == model]
        mmlu_cost = [r["cost_usd"] for r in mmlu if r["model"] == model]
        assert sum(gsm_cost) / len(gsm_cost) > 1.2 * sum(mmlu_cost) / len(mmlu_cost), model


@pytest.mark.shared_data
@pytest.mark.parametrize("where", ["beside", "above"])
def test_routellm_contaminated_prompts_are_excluded(mmlu_slice: tuple[Path, list[dict[str, str]]], where: str) -> None:
    path, source = mmlu_slice
    folder = path.parent if where == "beside" else path.parent.parent
    victim = source[1]["prompt"]
    with (folder / "contaminated_prompts.jsonl").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"train_prompt": "something else", "eval_prompt": victim, "train_idx": 1, "eval_idx": 1}) + "\n\n")
        fh.write(json.dumps({"train_prompt": "x", "eval_prompt": "not in the slice"}) + "\n")
    assert load_contaminated(path.parent) == {victim, "not in the slice"}
    rows = list(RouteLLMAdapter().rows(path))
    flagged = [r for r in rows if r.issue]
    assert len(flagged) == 2
    assert {r.issue for r in flagged} == {"contaminated"}
    assert {r.detail for r in flagged} == {"listed in contaminated_prompts.jsonl"}
    assert {r.fields["prompt"] for r in flagged} == {victim}
    assert {r.fields["model"] for r in flagged} == {MIXTRAL, GPT4}
    # kept when asked
    assert not [r for r in RouteLLMAdapter(exclude_contaminated=False).rows(path) if r.issue]


def test_routellm_without_contaminated_file(tmp_path: Path) -> None:
    assert load_contaminated(tmp_path) == set()


def test_routellm_unknown_model_column_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "mmlu_toy.csv"
    path.write_text(f"prompt,{GPT4},my-local-model\nWhat is 2+2?,True,False\n", encoding="utf-8")
    adapter = RouteLLMAdapter()
    assert adapter.sniff(path)
    with pytest.raises(DataFormatError) as err:
        list(adapter.rows(path))
    assert str(err.value) == (
        "mmlu_toy.csv: no price for model(s) ['my-local-model'] in catalogue 'routellm', and RouteLLM files "
        "carry no cost. Pass --catalogue with a TOML that lists them."
    )


def test_routellm_bad_correctness_cell_is_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "mmlu_toy.csv"
    path.write_text(f"prompt,{MIXTRAL},{GPT4}\nWhat is 2+2?,True,maybe\n", encoding="utf-8")
    rows = list(RouteLLMAdapter().rows(path))
    assert rows[0].issue is None
    assert rows[1].issue == "wrong_type"
    assert rows[1].detail == "correctness must be True/False; got 'maybe'"


# --- generic outcomes ---------------------------------------------------------------------------

GENERIC = [
    {
        "request_id": "a",
        "prompt": "Classify: refund please",
        "model": "claude-3-haiku",
        "quality": 1.0,
        "cost_usd": 0.003,
        "task": "triage",
    },
    {"request_id": "a", "prompt": "Classify: refund please", "model": "gpt-4o", "quality": 1.0, "cost_usd": 0.12, "task": "triage"},
    {"request_id": "b", "prompt": "Summarise the thread.", "model": "claude-3-haiku", "quality": 0.4, "cost_usd": 0.002, "task": "summary"},
]


def _write_generic(path: Path, rows: list[dict[str, Any]]) -> None:
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".ndjson", ".json"])
def test_outcomes_canonical_columns(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"log{suffix}"
    _write_generic(path, GENERIC)
    adapters = all_adapters()
    assert detect_format(path, adapters) == "outcomes"
    records = validated(list(OutcomesAdapter().rows(path)))
    assert [(r["request_id"], r["model"], r["quality"], r["cost_usd"], r["task"]) for r in records] == [
        (g["request_id"], g["model"], g["quality"], g["cost_usd"], g["task"]) for g in GENERIC
    ]
    assert [r["correct"] for r in records] == [True, True, False]
    assert set(records[0]) == set(OUTCOME_FIELDS)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_outcomes_with_a_mapping(tmp_path: Path, suffix: str) -> None:
    renamed = [{"id": g["request_id"], "text": g["prompt"], "llm": g["model"], "f1": g["quality"], "usd": g["cost_usd"]} for g in GENERIC]
    path = tmp_path / f"mapped{suffix}"
    _write_generic(path, renamed)
    mapping = {"request_id": "id", "prompt": "text", "model": "llm", "quality": "f1", "cost_usd": "usd"}
    adapter = OutcomesAdapter(mapping)
    assert adapter.sniff(path)
    if suffix == ".csv":
        assert not OutcomesAdapter().sniff(path)  # without the mapping there is no request_id/model column
    records = validated(list(adapter.rows(path)))
    assert [(r["request_id"], r["model"], r["quality"]) for r in records] == [(g["request_id"], g["model"], g["quality"]) for g in GENERIC]
    assert records[2]["prompt"] == "Summarise the thread."


def test_outcomes_mapping_of_messages(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    row = {"request_id": "c", "chat": [{"role": "user", "content": "hi"}], "model": "gpt-4o", "correct": True, "cost_usd": 0.1}
    _write_generic(path, [row])
    (record,) = validated(list(OutcomesAdapter({"messages": "chat"}).rows(path)))
    assert record["prompt"] == "user: hi" and record["quality"] == 1.0


def test_outcomes_unknown_mapping_field_is_a_format_error() -> None:
    with pytest.raises(DataFormatError) as err:
        OutcomesAdapter({"qualty": "f1", "request_id": "id", "zz": "y"})
    assert str(err.value) == (
        f"Column mapping names unknown field(s) ['qualty', 'zz']; the canonical fields are {', '.join(OUTCOME_FIELDS)}. "
        "Write the mapping as canonical=source."
    )


def test_outcomes_unparseable_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(
        json.dumps(GENERIC[0]) + '\n{not json\n\n[1, 2, 3]\n"just a string"\n' + json.dumps(GENERIC[2]) + "\n", encoding="utf-8"
    )
    rows = list(OutcomesAdapter().rows(path))
    assert [r.where for r in rows] == ["log.jsonl:1", "log.jsonl:2", "log.jsonl:4", "log.jsonl:5", "log.jsonl:6"]
    assert [r.issue for r in rows] == [None, "unparseable_row", "unparseable_row", "unparseable_row", None]
    assert rows[1].detail == "not JSON: Expecting property name enclosed in double quotes at char 1"
    assert rows[1].fields == {"raw": "{not json\n"}
    assert rows[2].detail == "a JSON line must be an object; got list"
    assert rows[2].fields == {"raw": [1, 2, 3]}
    assert rows[3].detail == "a JSON line must be an object; got str"


def test_outcomes_sniffing_refuses_other_files(tmp_path: Path) -> None:
    adapters = all_adapters()
    other_csv = tmp_path / "other.csv"
    other_csv.write_text("x,y\n1,2\n", encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n", encoding="utf-8")
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    for path in (other_csv, notes, empty):
        assert detect_format(path, adapters) is None, path
    canon = tmp_path / "canon.csv"
    canon.write_text("request_id,model,prompt,quality,cost_usd\n1,m,p,1,0\n", encoding="utf-8")
    assert detect_format(canon, adapters) == "outcomes"


def test_format_registry() -> None:
    assert FORMATS == ("auto", "routerbench", "routellm", "outcomes")
    assert list(ADAPTERS) == ["routerbench", "routellm", "outcomes"]
    assert {cls.name for cls in ADAPTERS.values()} == set(ADAPTERS)


# --- hostile files: a bad line is quarantined with its reason, never the end of the file ----------


def test_csv_bad_bytes_and_extra_cells_are_flagged_per_row(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes(b"a,b\n1,2\n3,\xff\xfe\n5,6,7\n8,9,,\n10\n")
    rows = list(iter_csv(path))
    assert [(r.line, r.issue) for r in rows] == [(2, None), (3, "bad_encoding"), (4, "unparseable_row"), (5, None), (6, None)]
    assert rows[1].row == {"a": "3", "b": "\\xff\\xfe"}  # the bytes kept as escapes, storable as UTF-8
    assert rows[1].detail == (
        "line 3 is not UTF-8 text (column 'b'); the row is kept here with \\xNN escapes for the bytes. Re-save the file as UTF-8."
    )
    assert rows[2].row == {"a": "5", "b": "6", "_extra_cells": ["7"]}  # nothing dropped without a note
    assert rows[2].detail == (
        "line 4 has 3 cells but the header names 2 columns; the extra cells cannot be placed. "
        'Quote cells that hold commas ("a, b"), or add the missing column names to the header.'
    )
    assert rows[3].row == {"a": "8", "b": "9"}  # empty trailing cells hold nothing to lose
    assert rows[4].row == {"a": "10", "b": None}


@pytest.mark.parametrize(
    ("content", "line", "why"),
    [(b'a,b\n1,2\n3,"open\n4,5\n6,7\n', 3, "unexpected end of data"), (b'a,b\n1,2\n3,"x"y\n4,5\n', 3, "',' expected after '\"'")],
)
def test_csv_quoting_that_cannot_be_split_is_refused_with_its_line(tmp_path: Path, content: bytes, line: int, why: str) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as err:
        list(iter_csv(path))
    assert str(err.value) == (
        f"q.csv: cannot split line {line} into cells reliably ({why}): a quoted cell that starts there is never closed, "
        "or text follows its closing quote, so every later line would be misread. Fix the quoting at line "
        f'{line} (a quote inside a quoted cell is written twice: ""), then ingest the file again.'
    )


def test_csv_header_survives_a_bad_byte_further_down(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"request_id,model\n1,m\xff\n")
    assert read_csv_header(path) == ["request_id", "model"]
    assert detect_format(path, all_adapters()) == "outcomes"


def test_jsonl_hostile_lines_are_quarantined_one_by_one(tmp_path: Path) -> None:
    good = json.dumps(GENERIC[0])
    path = tmp_path / "h.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + good.encode()
        + b"\n"  # a BOM before a valid first row
        + b'{"request_id": "x\xff"}\n'  # not UTF-8
        + b'{"a": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}\n"  # 5,000 deep
        + b'{"a": '
        + b"9" * 5000
        + b"}\n"  # a 5,000-digit number
        + b'{"quality": NaN, "a": 1}\n'  # Python's json writes NaN: still read
        + json.dumps(GENERIC[1]).encode()
        + b"\n"
    )
    rows = list(OutcomesAdapter().rows(path))
    assert [(r.where, r.issue) for r in rows] == [
        ("h.jsonl:1", None),
        ("h.jsonl:2", "bad_encoding"),
        ("h.jsonl:3", "unparseable_row"),
        ("h.jsonl:4", "unparseable_row"),
        ("h.jsonl:5", None),
        ("h.jsonl:6", None),
    ]
    assert rows[0].fields == GENERIC[0]
    assert rows[1].fields == {"raw": '{"request_id": "x\\xff"}\n'}
    assert rows[1].detail == (
        "line 2 is not UTF-8 text (invalid start byte: byte 0xff at byte 17); the line is kept "
        "here with \\xNN escapes for the bytes. Re-save the file as UTF-8."
    )
    assert rows[2].detail == (
        "line 3 nests arrays/objects more than 64 levels deep; at most 64 are accepted. Flatten "
        "it (or raise max_depth if it is legitimate)."
    )
    assert rows[3].detail.startswith(
        "line 4 holds a number written with 5,000 characters (99999999999999999999...); at most 100 are accepted."
    )
    assert rows[4].fields["a"] == 1 and rows[4].fields["quality"] != rows[4].fields["quality"]  # NaN


def test_a_json_array_that_cannot_be_read_is_one_format_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200 + "]" * 200, encoding="utf-8")
    with pytest.raises(
        DataFormatError,
        match=r"^deep\.json starts like a JSON array but cannot be read: deep\.json "
        r"nests arrays/objects more than 64 levels deep; .* Fix the file, or write one JSON object per "
        r"line \(JSONL\), where a bad line is quarantined instead of refusing the file\.$",
    ):
        list(OutcomesAdapter().rows(path))


def test_routerbench_and_routellm_quarantine_a_flagged_line_once_per_model(tmp_path: Path) -> None:
    rb = tmp_path / "rb.csv"
    rb.write_bytes(
        b"sample_id,prompt,eval_name,m1,m1|total_cost,m2,m2|total_cost\n"
        b"s1,['p'],t,1,0.1,0,0.2\ns2,['q\xff'],t,1,0.1,0,0.2\ns3,['r'],t,1,0.1,0,0.2,oops\n"
    )
    rows = list(RouterBenchAdapter().rows(rb))
    assert [(r.where, r.issue) for r in rows] == [
        ("rb.csv:2 [m1]", None),
        ("rb.csv:2 [m2]", None),
        ("rb.csv:3 [m1]", "bad_encoding"),
        ("rb.csv:3 [m2]", "bad_encoding"),
        ("rb.csv:4 [m1]", "unparseable_row"),
        ("rb.csv:4 [m2]", "unparseable_row"),
    ]
    assert rows[4].fields["_extra_cells"] == ["oops"]
    mmlu = tmp_path / "mmlu_x.csv"
    mmlu.write_bytes(f"prompt,{GPT4},{MIXTRAL}\nQ1,True,False\nQ2,True,False,extra\n".encode())
    rows = list(RouteLLMAdapter(catalogue=builtin_catalogue("routellm"), exclude_contaminated=False).rows(mmlu))
    assert [r.issue for r in rows] == [None, None, "unparseable_row", "unparseable_row"]
