"""OutcomeValidator: one good row normalised, then every reason code the validator produces itself,
each with its detail wording pinned."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from tierroute.pipelines.data.records import (
    OUTCOME_FIELDS,
    QUARANTINE_REASONS,
    REQUIRED_FIELDS,
    OutcomeValidator,
    RowIssue,
    prompt_hash,
    quarantine_line,
)

BASE: dict[str, Any] = {"request_id": "r1", "prompt": "Classify this ticket.", "model": "claude-3-haiku", "cost_usd": 0.003, "quality": 0.8}

#: Reason codes a source adapter (not the validator) assigns.
ADAPTER_REASONS = {"unparseable_row", "contaminated"}


def check(raw: dict[str, Any], validator: OutcomeValidator | None = None, where: str = "f.jsonl:1") -> dict[str, Any] | RowIssue:
    return (validator or OutcomeValidator()).validate(raw, where)


def issue(raw: dict[str, Any], reason: str, pattern: str) -> RowIssue:
    """Validate ``raw`` on a fresh validator; assert it is quarantined with ``reason`` and a detail
    matching ``pattern`` (re.search)."""
    result = check(raw)
    assert isinstance(result, RowIssue), f"expected {reason}, got a record {result!r}"
    assert result.reason == reason, result
    assert result.reason in QUARANTINE_REASONS
    assert re.search(pattern, result.detail), f"{pattern!r} not in {result.detail!r}"
    return result


# --- a good row ----------------------------------------------------------------------------------


def test_good_row_is_normalised_to_every_canonical_field() -> None:
    raw = {
        "request_id": 42,
        "prompt": "Extract the order id.",
        "output_schema": '{"order_id": "string", "amount": "number"}',
        "latency_sla_ms": "150",
        "task": "extraction",
        "model": "  gpt-4o-mini ",
        "quality": "0.75",
        "cost_usd": "0.01",
        "latency_ms": 820,
        "timestamp": "2024-01-02T05:04:05+02:00",
        "chosen": "yes",
        "propensity": "0.25",
    }
    record = check(raw)
    assert isinstance(record, dict)
    assert tuple(record) == OUTCOME_FIELDS
    assert record == {
        "request_id": "42",
        "prompt": "Extract the order id.",
        "output_schema": '{"amount": "number", "order_id": "string"}',
        "latency_sla_ms": 150.0,
        "task": "extraction",
        "model": "gpt-4o-mini",
        "quality": 0.75,
        "correct": True,
        "cost_usd": 0.01,
        "latency_ms": 820.0,
        "timestamp": "2024-01-02T03:04:05+00:00",
        "chosen": True,
        "propensity": 0.25,
    }


def test_optional_fields_absent_become_none() -> None:
    record = check(dict(BASE))
    assert isinstance(record, dict)
    for name in ("output_schema", "latency_sla_ms", "task", "latency_ms", "timestamp", "chosen", "propensity"):
        assert record[name] is None, name
    assert isinstance(record["quality"], float) and isinstance(record["cost_usd"], float)
    assert record["request_id"] == "r1"


@pytest.mark.parametrize(
    ("quality", "threshold", "correct"),
    [(0.5, 0.5, True), (0.49, 0.5, False), (0.7, 0.8, False), (0.8, 0.8, True), (0.0, 0.0, True), (1.0, 1.0, True)],
)
def test_correct_is_derived_from_quality_with_the_threshold(quality: float, threshold: float, correct: bool) -> None:
    record = check({**BASE, "quality": quality}, OutcomeValidator(correct_threshold=threshold))
    assert isinstance(record, dict)
    assert record["correct"] is correct
    assert record["quality"] == quality


@pytest.mark.parametrize(
    ("value", "quality", "correct"),
    [
        (True, 1.0, True),
        (False, 0.0, False),
        ("True", 1.0, True),
        ("false", 0.0, False),
        (1, 1.0, True),
        (0.0, 0.0, False),
        ("1", 1.0, True),
        ("0.0", 0.0, False),
        ("yes", 1.0, True),
        ("n", 0.0, False),
    ],
)
def test_quality_is_derived_from_correct(value: object, quality: float, correct: bool) -> None:
    raw = {k: v for k, v in BASE.items() if k != "quality"}
    record = check({**raw, "correct": value})
    assert isinstance(record, dict)
    assert record["quality"] == quality
    assert record["correct"] is correct


def test_explicit_correct_wins_over_the_threshold() -> None:
    record = check({**BASE, "quality": 0.2, "correct": True})
    assert isinstance(record, dict)
    assert (record["quality"], record["correct"]) == (0.2, True)


@pytest.mark.parametrize(
    ("schema", "canonical"),
    [
        ({"b": "string", "a": "x | y"}, '{"a": "x | y", "b": "string"}'),
        ('{ "b" : "string",\n "a": "x | y" }', '{"a": "x | y", "b": "string"}'),
        (["billing", "technical"], '["billing", "technical"]'),
        ({"type": "object", "properties": {"é": {"type": "string"}}}, '{"properties": {"é": {"type": "string"}}, "type": "object"}'),
        ("", None),
        (None, None),
    ],
)
def test_schema_becomes_canonical_json_text(schema: object, canonical: str | None) -> None:
    record = check({**BASE, "output_schema": schema})
    assert isinstance(record, dict)
    assert record["output_schema"] == canonical
    if canonical is not None:
        assert json.loads(canonical) == (json.loads(schema) if isinstance(schema, str) else schema)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+00:00"),
        ("2024-01-02T03:04:05", "2024-01-02T03:04:05+00:00"),  # naive = UTC
        ("2024-01-02 03:04:05.250000", "2024-01-02T03:04:05.250000+00:00"),
        ("2024-01-02T05:04:05+02:00", "2024-01-02T03:04:05+00:00"),
        ("2024-01-01T22:00:00-05:30", "2024-01-02T03:30:00+00:00"),
        (0, "1970-01-01T00:00:00+00:00"),
        (1_700_000_000, "2023-11-14T22:13:20+00:00"),
        (1_700_000_000.5, "2023-11-14T22:13:20.500000+00:00"),
    ],
)
def test_timestamp_iso_or_epoch_becomes_utc_iso(stamp: object, expected: str) -> None:
    record = check({**BASE, "timestamp": stamp})
    assert isinstance(record, dict)
    assert record["timestamp"] == expected


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("1700000000", "2023-11-14T22:13:20+00:00"),
        (" 1700000000.5 ", "2023-11-14T22:13:20.500000+00:00"),
        ("0", "1970-01-01T00:00:00+00:00"),
    ],
)
def test_epoch_seconds_as_text_are_accepted(stamp: str, expected: str) -> None:
    """Every CSV cell arrives as text, so epoch seconds must be read from strings too."""
    record = check({**BASE, "timestamp": stamp})
    assert isinstance(record, dict) and record["timestamp"] == expected


def test_messages_list_becomes_prompt_text() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = "system: Be brief.\nuser: Hi"
    from_messages = check({**{k: v for k, v in BASE.items() if k != "prompt"}, "messages": messages})
    from_prompt_list = check({**BASE, "prompt": messages})
    assert isinstance(from_messages, dict) and isinstance(from_prompt_list, dict)
    assert from_messages["prompt"] == expected
    assert from_prompt_list["prompt"] == expected
    assert "messages" not in from_messages


def test_nan_latencies_become_none() -> None:
    record = check({**BASE, "latency_ms": "nan", "latency_sla_ms": float("nan")})
    assert isinstance(record, dict)
    assert record["latency_ms"] is None and record["latency_sla_ms"] is None


def test_prompt_hash_is_stable_and_short() -> None:
    assert prompt_hash("abc") == "ba7816bf8f01cfea"
    assert len(prompt_hash("x" * 10_000)) == 16


# --- every reason code --------------------------------------------------------------------------


def test_every_validator_reason_code_is_covered_below() -> None:
    """This file tests each reason the validator emits; the others come from adapters."""
    covered = {
        "missing_field",
        "wrong_type",
        "quality_nan",
        "quality_out_of_range",
        "negative_cost",
        "negative_latency",
        "propensity_out_of_range",
        "bad_schema",
        "bad_timestamp",
        "conflicting_request_id",
        "duplicate_request_model",
        "bad_encoding",
        "bad_features",
    }
    assert covered | ADAPTER_REASONS == set(QUARANTINE_REASONS)


@pytest.mark.parametrize("name", REQUIRED_FIELDS)
@pytest.mark.parametrize("absent", ["drop", None, "", "   "])
def test_missing_field(name: str, absent: object) -> None:
    raw = dict(BASE)
    if absent == "drop":
        del raw[name]
    else:
        raw[name] = absent
    issue(raw, "missing_field", rf"^required field '{name}' is missing or empty$")


def test_missing_prompt_is_fine_when_messages_are_given() -> None:
    raw = {k: v for k, v in BASE.items() if k != "prompt"}
    assert isinstance(check({**raw, "messages": [{"role": "user", "content": "x"}]}), dict)
    issue({**raw, "messages": []}, "missing_field", r"^required field 'prompt' is missing or empty$")


@pytest.mark.parametrize("blank", ["drop", None, ""])
def test_missing_quality_and_correct(blank: object) -> None:
    raw = {k: v for k, v in BASE.items() if k != "quality"}
    if blank != "drop":
        raw.update(quality=blank, correct=blank)
    issue(raw, "missing_field", r"^a row needs 'quality' or 'correct'; both are missing$")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"quality": "abc"}, r"^quality must be a number; got 'abc' \(str\)$"),
        ({"quality": True}, r"^quality must be a number; got True \(bool\)$"),
        ({"quality": [0.5]}, r"^quality must be a number; got \[0\.5\] \(list\)$"),
        ({"cost_usd": "x"}, r"^cost_usd must be a number; got 'x' \(str\)$"),
        ({"cost_usd": float("inf")}, r"^cost_usd must be a finite number; got inf$"),
        ({"cost_usd": "nan"}, r"^cost_usd must be a finite number; got nan$"),
        ({"correct": "maybe"}, r"^correct must be true/false \(or 1/0\); got 'maybe' \(str\)$"),
        ({"correct": 2}, r"^correct must be true/false \(or 1/0\); got 2 \(int\)$"),
        ({"chosen": "perhaps"}, r"^chosen must be true/false \(or 1/0\); got 'perhaps' \(str\)$"),
        ({"request_id": 1.5}, r"^request_id must be a string or an int; got 1\.5 \(float\)$"),
        ({"request_id": {"id": 1}}, r"^request_id must be a string or an int; got \{'id': 1\} \(dict\)$"),
        ({"request_id": True}, r"^request_id must be a string or an int; got True \(bool\)$"),
        ({"model": 7}, r"^model must be a string; got 7 \(int\)$"),
        ({"prompt": {"text": "hi"}}, r"^prompt must be text or chat messages; got \{'text': 'hi'\} \(dict\)$"),
        ({"prompt": [1, 2]}, r"^messages\[0\] must be an object with 'role' and 'content'; got 1 \(int\)"),
        (
            {"prompt": None, "messages": "hello"},
            r"^'messages' must be a non-empty list of \{'role', 'content'\} objects; "
            r"got 'hello' \(str\)",
        ),
        ({"latency_ms": "slow"}, r"^latency_ms must be a number; got 'slow' \(str\)$"),
        ({"propensity": "half"}, r"^propensity must be a number; got 'half' \(str\)$"),
    ],
)
def test_wrong_type(change: dict[str, Any], pattern: str) -> None:
    issue({**BASE, **change}, "wrong_type", pattern)


def test_wrong_type_detail_truncates_long_values() -> None:
    result = issue({**BASE, "quality": "z" * 500}, "wrong_type", r"^quality must be a number; got 'z+\.\.\. \(str\)$")
    assert len(result.detail) < 140


@pytest.mark.parametrize("nan", [float("nan"), "nan", "NaN", " nan "])
def test_quality_nan(nan: object) -> None:
    issue({**BASE, "quality": nan}, "quality_nan", r"^quality is NaN: the source recorded no score for this model$")


@pytest.mark.parametrize(("value", "shown"), [(-0.1, "-0.1"), (1.5, "1.5"), ("2", "2.0"), (float("inf"), "inf")])
def test_quality_out_of_range(value: object, shown: str) -> None:
    issue({**BASE, "quality": value}, "quality_out_of_range", rf"^quality must be in \[0, 1\]; got {re.escape(shown)}$")


@pytest.mark.parametrize(("value", "shown"), [(-0.01, "-0.01"), ("-1", "-1.0")])
def test_negative_cost(value: object, shown: str) -> None:
    issue({**BASE, "cost_usd": value}, "negative_cost", rf"^cost_usd must be >= 0; got {re.escape(shown)}$")


def test_zero_cost_is_fine() -> None:
    assert isinstance(check({**BASE, "cost_usd": 0}), dict)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"latency_ms": -5}, r"^latency_ms must be a finite number >= 0; got -5\.0$"),
        ({"latency_sla_ms": "-1"}, r"^latency_sla_ms must be a finite number >= 0; got -1\.0$"),
        ({"latency_ms": "inf"}, r"^latency_ms must be a finite number >= 0; got inf$"),
    ],
)
def test_negative_latency(change: dict[str, Any], pattern: str) -> None:
    issue({**BASE, **change}, "negative_latency", pattern)


@pytest.mark.parametrize(("value", "shown"), [(0, "0.0"), (1.5, "1.5"), (-0.2, "-0.2"), ("0", "0.0")])
def test_propensity_out_of_range(value: object, shown: str) -> None:
    issue({**BASE, "propensity": value}, "propensity_out_of_range", rf"^propensity must be in \(0, 1\]; got {re.escape(shown)}$")


def test_propensity_one_is_fine() -> None:
    record = check({**BASE, "propensity": 1})
    assert isinstance(record, dict) and record["propensity"] == 1.0


@pytest.mark.parametrize(
    ("schema", "pattern"),
    [
        ("{not json", r"^output_schema is not valid JSON \(Expecting property name enclosed in double quotes\)$"),
        ("[1, ", r"^output_schema is not valid JSON \("),
        ("{}", r"^Malformed output_schema: the object is empty; got \{\} \(dict\)\. Send null when there is no schema\.$"),
        ({}, r"^Malformed output_schema: the object is empty"),
        ([], r"^Malformed output_schema: the list is empty"),
        (42, r"^Malformed output_schema: expected a JSON Schema"),
    ],
)
def test_bad_schema(schema: object, pattern: str) -> None:
    issue({**BASE, "output_schema": schema}, "bad_schema", pattern)


@pytest.mark.parametrize(
    ("stamp", "shown"),
    [
        ("yesterday", "'yesterday' (str)"),
        ("2024-13-45", "'2024-13-45' (str)"),
        (True, "True (bool)"),
        ([2024], "[2024] (list)"),
        (1e20, "1e+20 (float)"),
    ],
)
def test_bad_timestamp(stamp: object, shown: str) -> None:
    issue({**BASE, "timestamp": stamp}, "bad_timestamp", rf"^timestamp must be ISO 8601 or epoch seconds; got {re.escape(shown)}$")


def test_conflicting_request_id_names_the_first_use() -> None:
    validator = OutcomeValidator()
    assert isinstance(validator.validate(dict(BASE), "a.jsonl:1"), dict)
    # another model on the same prompt is fine
    assert isinstance(validator.validate({**BASE, "model": "gpt-4o"}, "a.jsonl:2"), dict)
    result = validator.validate({**BASE, "model": "gpt-4o-mini", "prompt": "Another prompt."}, "b.jsonl:7")
    assert isinstance(result, RowIssue)
    assert result.reason == "conflicting_request_id"
    assert result.detail == ("request_id 'r1' was first used for a different prompt at a.jsonl:1; give one of them another id")
    # the conflicting row is not remembered: the first prompt still owns the id
    assert isinstance(validator.validate({**BASE, "model": "gpt-4o-mini"}, "a.jsonl:3"), dict)


def test_conflict_is_caught_across_int_and_str_ids() -> None:
    validator = OutcomeValidator()
    assert isinstance(validator.validate({**BASE, "request_id": 7}, "a:1"), dict)
    result = validator.validate({**BASE, "request_id": "7", "model": "x", "prompt": "other"}, "a:2")
    assert isinstance(result, RowIssue) and result.reason == "conflicting_request_id"


def test_duplicate_request_model() -> None:
    validator = OutcomeValidator()
    assert isinstance(validator.validate(dict(BASE), "a.jsonl:1"), dict)
    result = validator.validate({**BASE, "quality": 0.1}, "a.jsonl:9")
    assert isinstance(result, RowIssue)
    assert result.reason == "duplicate_request_model"
    assert result.detail == "request_id 'r1' x model 'claude-3-haiku' already has an outcome (first at a.jsonl:1)"


def test_duplicate_check_uses_the_stripped_model_name() -> None:
    validator = OutcomeValidator()
    assert isinstance(validator.validate(dict(BASE), "a:1"), dict)
    result = validator.validate({**BASE, "model": " claude-3-haiku "}, "a:2")
    assert isinstance(result, RowIssue) and result.reason == "duplicate_request_model"


def test_a_quarantined_row_is_not_remembered() -> None:
    validator = OutcomeValidator()
    assert isinstance(validator.validate({**BASE, "quality": math.nan}, "a:1"), RowIssue)
    assert isinstance(validator.validate(dict(BASE), "a:2"), dict)


# --- hostile values: never an exception, always a reason -------------------------------------------


def test_prompt_hash_takes_any_str_and_keeps_the_hashes_of_text() -> None:
    assert prompt_hash("abc") == "ba7816bf8f01cfea"  # bundles carry hashes of ordinary text: unchanged
    import hashlib

    assert prompt_hash("Grüße, 世界 🙂") == hashlib.sha256("Grüße, 世界 🙂".encode()).hexdigest()[:16]
    assert len(prompt_hash("p\ud800")) == 16 and prompt_hash("p\ud800") != prompt_hash("p\udc00")


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("prompt", "p\ud800", "U+D800) at character 1"),
        ("request_id", "id-\udcff", "U+DCFF) at character 3"),
        ("model", "\udc80gpt", "U+DC80) at character 0"),
        ("task", "t\ud83d", "U+D83D) at character 1"),
    ],
)
def test_a_lone_surrogate_in_text_is_bad_encoding(field: str, value: str, shown: str) -> None:
    result = issue(
        {**BASE, field: value},
        "bad_encoding",
        rf"^{field} holds a lone surrogate \({re.escape(shown)}, half of a UTF-16 pair that is not text; "
        "fix the writer",
    )
    assert isinstance(result, RowIssue)


def test_a_surrogate_pair_is_text() -> None:
    assert check({**BASE, "prompt": "smile \U0001f642"})["prompt"] == "smile \U0001f642"  # type: ignore[index]


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("quality", "quality_out_of_range"),
        ("cost_usd", "wrong_type"),
        ("latency_ms", "negative_latency"),
        ("propensity", "propensity_out_of_range"),
    ],
)
def test_an_integer_beyond_float_range_is_quarantined_not_an_overflow(field: str, reason: str) -> None:
    huge = int("9" * 400)
    issue(
        {**BASE, field: huge},
        reason,
        rf"^{field} must be a finite number; got an integer of 400 digits \(int\), beyond a float's range "
        r"\(about 1\.8e308\)$",
    )


def test_an_integer_too_long_to_print_is_still_described() -> None:
    issue(
        {**BASE, "correct": 10**5000},
        "wrong_type",
        r"^correct must be true/false \(or 1/0\); got an integer of "
        r"5,001 digits \(int\)$",
    )
    issue(
        {**BASE, "request_id": 10**100},
        "wrong_type",
        r"^request_id must be an int of at most 77 digits \(or a "
        r"string\); got 1000",
    )


def test_the_quarantine_line_is_always_writable_utf8_json() -> None:
    row = {"prompt": "p\ud800", "raw": "x\udcff", "big": 10**5000, "nan": math.nan, "obj": object, "k\udc80": 1}
    line = quarantine_line("f.csv:3", "bad_encoding", "detail \ud800", row)
    line.encode("utf-8")  # no UnicodeEncodeError
    back = json.loads(line)
    assert back["row"]["prompt"] == "p\\ud800" and back["row"]["raw"] == "x\\xff" and back["row"]["nan"] == "nan"
    assert back["row"]["big"] == "an integer of 5,001 digits (int)" and back["detail"] == "detail \\ud800"
    assert "k\\x80" in back["row"]


# --- feature-only rows (privacy mode) -------------------------------------------------------------

FEATURE_ROW: dict[str, Any] = {
    **{k: v for k, v in BASE.items() if k != "prompt"},
    "chosen": True,
    "propensity": 0.5,
    "features": [12, None, 0.5],
    "feature_spec": "ab" * 32,
}


def test_a_feature_only_row_keeps_its_vector_and_spec_instead_of_a_prompt() -> None:
    record = check(FEATURE_ROW)
    assert isinstance(record, dict) and record["prompt"] is None
    assert record["features"] == [12.0, None, 0.5] and record["feature_spec"] == "ab" * 32
    assert tuple(record)[: len(OUTCOME_FIELDS)] == OUTCOME_FIELDS
    from_csv = check({**FEATURE_ROW, "features": "[12, null, 0.5]", "propensity": "0.5"})  # a CSV cell holds JSON text
    assert isinstance(from_csv, dict) and from_csv["features"] == [12.0, None, 0.5]
    text = check(BASE)
    assert isinstance(text, dict) and "features" not in text  # only rows that have them carry the fields


def test_feature_only_rows_conflict_and_duplicate_by_their_vector() -> None:
    validator = OutcomeValidator()
    assert isinstance(check(FEATURE_ROW, validator), dict)
    assert isinstance(check({**FEATURE_ROW, "model": "gpt-4o"}, validator, "f.jsonl:2"), dict)  # same vector: one request
    other = check({**FEATURE_ROW, "model": "x", "features": [13, None, 0.5]}, validator, "f.jsonl:3")
    assert isinstance(other, RowIssue) and other.reason == "conflicting_request_id"


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"features": [1, True]}, "bad_features", r"^features\[1\] must be a finite number or null; got True \(bool\)$"),
        ({"features": [1, float("inf")]}, "bad_features", r"^features\[1\] must be a finite number or null; got inf"),
        ({"features": [1, 10**400]}, "bad_features", r"^features\[1\] must be a finite number or null; got "),
        ({"features": []}, "bad_features", r"^features must be a non-empty list of at most 4096 numbers and nulls; got "),
        ({"features": "[1,"}, "bad_features", r"^features must be a JSON list of numbers and nulls; got '\[1,' \(str\)$"),
        ({"features": {"a": 1}}, "bad_features", r"^features must be a non-empty list"),
        (
            {"feature_spec": "abc"},
            "bad_features",
            r"^feature_spec must be a FeatureSpec fingerprint \(64 hex digits: the bundle's feature_spec_fingerprint\); got 'abc'",
        ),
        (
            {"feature_spec": None},
            "missing_field",
            r"^a feature-only row needs both 'features' and 'feature_spec'; it has 'features' but no 'feature_spec'$",
        ),
        (
            {"features": None},
            "missing_field",
            r"^a feature-only row needs both 'features' and 'feature_spec'; it has 'feature_spec' but no 'features'$",
        ),
    ],
)
def test_bad_feature_fields_are_quarantined(change: dict[str, Any], reason: str, detail: str) -> None:
    issue({**FEATURE_ROW, **change}, reason, detail)
