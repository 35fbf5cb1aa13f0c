"""Every scorer of ``tierroute benchmark`` with pinned cases: right, wrong and edge answers, the
reference checks and their wording (tierroute.pipelines.benchmark.scorers.text, scorers_json, scorers_code,
scorers_judge)."""

from __future__ import annotations

import sys

import pytest

from tierroute.pipelines.benchmark.scorers.code_scorer import CodeLimits, extract_code, score_code
from tierroute.pipelines.benchmark.scorers.json_scorer import extract_json, field_f1, score_json, to_json_schema, validate_json
from tierroute.pipelines.benchmark.scorers.judge import judge_messages, parse_judge_reply
from tierroute.pipelines.benchmark.scorers.registry import check_reference, default_thresholds, score_text
from tierroute.pipelines.benchmark.scorers.text import extract_choice, extract_number, normalize_answer, token_f1

DEFAULT_THRESHOLDS = default_thresholds()


# -- exact / f1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,normal",
    [("  The Answer: Paris! ", "answer paris"), ("An apple a day", "apple day"), ("A-1234", "a1234"), ("Theory", "theory"), ("", "")],
)
def test_normalisation_is_squads(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


@pytest.mark.parametrize(
    "response,reference,quality",
    [
        ("Paris.", "paris", 1.0),
        ("The Eiffel Tower", "Eiffel tower!", 1.0),
        ("Paris, France", "Paris", 0.0),
        ("Lyon", ["Paris", "Lyon"], 1.0),
        ("", "", 1.0),
    ],
)
def test_exact(response: str, reference: object, quality: float) -> None:
    assert score_text("exact", response, check_reference("exact", reference)).quality == quality


@pytest.mark.parametrize(
    "response,reference,quality",
    [
        ("order A-1 shipped", "the order A-1 shipped", 1.0),
        ("The order A-1 has shipped", "order A-1 shipped", 6 / 7),  # 3 of 4 words right, 3 of 3 found
        ("nothing relevant", "order A-1 shipped", 0.0),
        ("", "order", 0.0),
        ("shipped shipped", "shipped", 2 / 3),  # repeats count once per reference occurrence
        ("order A-1", ["no", "order A-1 shipped"], 0.8),  # the best reference
    ],
)
def test_token_f1(response: str, reference: object, quality: float) -> None:
    assert score_text("f1", response, check_reference("f1", reference)).quality == pytest.approx(quality)
    assert token_f1("", "") == 1.0


# -- choice ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,letter",
    [
        ("The answer is (B).", "B"),
        ("B)", "B"),
        ("**B**", "B"),
        ("b", "B"),
        ("(c)", "C"),
        ("B. Paris", "B"),
        ("Answer: D", "D"),
        ("answer: **C**", "C"),
        ("I think (A) fits, but the final answer is B.", "B"),
        ("**C**: because 4 is even", "C"),
        ("Option D is right", "D"),
        ("Final: **A**", "A"),
        ("The answer is a bit unclear; (C) I guess", "C"),
        ("The answer is Beijing", None),
        ("I do not know", None),
        ("", None),
    ],
)
def test_choice_letter_extraction(text: str, letter: str | None) -> None:
    assert extract_choice(text) == letter


def test_choice_scores_against_a_normalised_reference() -> None:
    ref = check_reference("choice", "(b)")
    assert ref == "B"
    assert score_text("choice", "The answer is (B).", ref).quality == 1.0
    assert score_text("choice", "The answer is (C).", ref).quality == 0.0
    assert score_text("choice", "no idea", ref).detail == "no choice letter found in the answer"
    with pytest.raises(ValueError, match=r"a 'choice' reference must be one letter A-Z such as \"B\" or \"\(B\)\""):
        check_reference("choice", "BC")


# -- numeric ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,number",
    [
        ("17 * 3 = 51", 51.0),
        ("It costs $1,234.50 in total.", 1234.5),
        ("#### 72", 72.0),
        ("First 3, then 4 apples.\n#### 7\nThanks 2", 7.0),
        ("so \\boxed{42} is it, not 41", 42.0),
        ("The answer is -3. Check: 9 - 12", -3.0),
        ("\u22125 degrees", -5.0),
        ("1.5e3 meters", 1500.0),
        ("about 50%", 50.0),
        ("42.", 42.0),
        ("no digits here", None),
    ],
)
def test_number_extraction(text: str, number: float | None) -> None:
    assert extract_number(text) == number


@pytest.mark.parametrize(
    "response,reference,quality",
    [
        ("Answer: 51", 51, 1.0),
        ("Answer: 51.0", "51", 1.0),
        ("3.14159", 3.1416, 1.0),  # within 1e-4 relative
        ("0.333", "0.3333333", 0.0),
        ("1,000,000", 1e6, 1.0),
        ("52", 51, 0.0),
        ("none", 51, 0.0),
        ("0", 0, 1.0),
    ],
)
def test_numeric(response: str, reference: object, quality: float) -> None:
    assert score_text("numeric", response, check_reference("numeric", reference)).quality == quality


def test_numeric_reference_must_be_a_number() -> None:
    with pytest.raises(ValueError, match=r"a 'numeric' reference must be a finite number such as 42 or \"1,234.5\""):
        check_reference("numeric", "forty-two")
    with pytest.raises(ValueError, match="a 'numeric' reference must be a finite number"):
        check_reference("numeric", True)


# -- json ------------------------------------------------------------------------------------------

SCHEMA = {"order_id": "string", "status": "shipped | lost"}


@pytest.mark.parametrize(
    "text,value",
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure:\n```json\n{"a": 2}\n```\nDone.', {"a": 2}),
        ("```\n[1, 2]\n```", [1, 2]),
        ('Here it is: {"a": 3} -- hope it helps {x}', {"a": 3}),
        ("no json here", None),
        ('{"a": ', None),
        ("null", None),
    ],
)
def test_json_extraction(text: str, value: object) -> None:
    assert extract_json(text) == value


def test_json_quality_is_validity_then_field_f1() -> None:
    ref = check_reference("json", '{"order_id": "A-1", "status": "shipped"}', SCHEMA)
    assert score_json('{"order_id": "A-1", "status": "shipped"}', ref, SCHEMA).quality == 1.0
    assert score_json('{"order_id": "a-1", "status": "shipped"}', ref, SCHEMA).quality == 1.0  # normalised strings
    half = score_json('{"order_id": "A-2", "status": "shipped"}', ref, SCHEMA)
    assert (half.quality, half.detail) == (0.5, "valid JSON; field F1 0.500")
    bad = score_json('{"order_id": "A-1", "status": "stolen"}', ref, SCHEMA)
    assert bad.quality == 0.0 and bad.detail.startswith('schema violated: $.status: "stolen" is not one of ["shipped", "lost"]')
    missing = score_json('{"status": "lost"}', ref, SCHEMA)
    assert missing.detail == "schema violated: $: the required field 'order_id' is missing"
    assert score_json("I cannot do that", ref, SCHEMA).detail == "no JSON found in the answer"
    assert score_json('{"order_id": "A-1", "status": "lost"}', None, SCHEMA).quality == 1.0  # schema only


def test_field_f1_flattens_paths_and_ignores_nulls() -> None:
    ref = {"id": 7, "items": [{"sku": "a"}, {"sku": "b"}], "note": None, "ok": True}
    assert field_f1({"id": 7.0, "items": [{"sku": "b"}, {"sku": "a"}], "ok": True}, ref) == 1.0
    assert field_f1({"id": 7, "items": [{"sku": "a"}], "ok": 1}, ref) == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert field_f1({}, {}) == 1.0 and field_f1({}, ref) == 0.0


@pytest.mark.parametrize(
    "schema,value,problem",
    [
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, {"n": 0}, "$.n: 0 is outside the allowed range"),
        ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": True}, "$.n: expected integer; got true"),
        (
            {"type": "object", "additionalProperties": False, "properties": {}},
            {"x": 1},
            "$: field 'x' is not allowed (additionalProperties is false)",
        ),
        ({"type": "array", "items": {"type": "string"}, "maxItems": 1}, ["a", 1], "$: 2 items is outside the allowed range"),
        ({"type": "string", "pattern": "^A-\\d+$"}, "B-1", "$: 'B-1' does not match the pattern '^A-\\\\d+$'"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, 3, "$: matches 0 of the 2 'anyOf' alternatives"),
        (
            {"$defs": {"S": {"enum": ["x"]}}, "type": "object", "properties": {"s": {"$ref": "#/$defs/S"}}},
            {"s": "y"},
            '$.s: "y" is not one of ["x"]',
        ),
        ({"type": "number", "multipleOf": 0.5}, 1.25, "$: 1.25 is not a multiple of 0.5"),
        ({"type": "string", "nullable": True}, None, None),
        ({"type": "string", "format": "date"}, "whenever", None),  # format is not checked
    ],
)
def test_the_validator_subset(schema: object, value: object, problem: str | None) -> None:
    errors = validate_json(value, schema)
    assert (errors[0] if errors else None) == problem


def test_every_schema_form_becomes_a_json_schema() -> None:
    assert to_json_schema(None) is None and to_json_schema({"type": "text"}) is None
    assert to_json_schema(["billing", "tech"]) == {"enum": ["billing", "tech"]}
    assert to_json_schema({"id": "string", "tags": ["string"], "kind": "a | b", "x": "number | null"}) == {
        "type": "object",
        "required": ["id", "tags", "kind", "x"],
        "properties": {
            "id": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
            "x": {"type": ["number", "null"]},
        },
    }
    inner = {"type": "object", "properties": {"q": {"type": "string"}}}
    assert to_json_schema({"type": "json_schema", "json_schema": {"name": "n", "schema": inner}}) == inner
    tool = {"type": "function", "function": {"name": "f", "parameters": inner}}
    assert to_json_schema([tool]) == inner
    assert validate_json({"q": 1}, to_json_schema({"tools": [tool, tool]})) == ["$: matches 0 of the 2 'anyOf' alternatives"]


def test_json_reference_checks() -> None:
    with pytest.raises(ValueError, match="the 'json' scorer needs a 'reference' object, an 'output_schema', or both"):
        check_reference("json", None, None)
    with pytest.raises(ValueError, match=r"a 'json' reference must be a JSON object/array \(or a string holding one\)"):
        check_reference("json", "not json", None)


# -- code ------------------------------------------------------------------------------------------


def test_code_extraction() -> None:
    assert extract_code("Here:\n```python\nx = 1\n```\nand\n```python\nx = 2\n```") == "x = 1\n"
    assert extract_code("```js\nlet x\n```\n```py\ny = 1\n```") == "y = 1\n"
    assert extract_code("```\nz = 3\n```") == "z = 3\n"
    assert extract_code("def f(): pass") == "def f(): pass"


def test_code_passes_and_fails_on_the_reference_tests() -> None:
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    assert score_code(right, "assert add(2, 3) == 5").quality == 1.0
    wrong = score_code("def add(a, b):\n    return a - b", "assert add(2, 3) == 5, 'add is wrong'")
    assert (wrong.quality, wrong.detail) == (0.0, "tests failed (exit 1): AssertionError: add is wrong")
    assert score_code("def add(:", "assert True").detail.startswith("tests failed (exit 1): SyntaxError")


def test_code_runs_isolated_in_a_temporary_folder(tmp_path: object) -> None:
    probe = (
        "import os, sys\nassert sys.flags.isolated and sys.flags.dont_write_bytecode\n"
        "assert 'HOME' not in os.environ and 'PATH' not in os.environ\n"
        "assert os.path.basename(os.getcwd()).startswith('tierroute-code-')\n"
    )
    assert score_code(probe, "").detail == "tests passed"


def test_code_timeout_kills_it() -> None:
    got = score_code("while True:\n    pass", "", CodeLimits(timeout_s=0.3))
    assert (got.quality, got.detail) == (0.0, "tests timed out after 0.3 s")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux")
def test_code_memory_is_capped() -> None:
    got = score_code("x = bytearray(512 * 1024 * 1024)", "", CodeLimits(memory_mb=128))
    assert got.quality == 0.0 and got.detail.endswith("MemoryError")


def test_code_limits_are_checked() -> None:
    from tierroute.errors import ConfigError

    with pytest.raises(ConfigError, match=r"The 'memory_mb' parameter of CodeLimits must be an int in the range \[64, inf\)"):
        CodeLimits(memory_mb=1)


def test_code_reference_must_be_test_source() -> None:
    with pytest.raises(ValueError, match=r"a 'code' reference must be Python test code \(a string of asserts\)"):
        check_reference("code", ["assert True"])
    with pytest.raises(ValueError, match="the 'code' scorer needs a non-empty 'reference'"):
        check_reference("code", "  ")


# -- judge -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply,quality",
    [
        ("Score: 7", 0.7),
        ("**Score:** 9", 0.9),
        ("score = 7.5", 0.75),
        ("8/10", 0.8),
        ("I'd give it 6 out of 10.", 0.6),
        ("10", 1.0),
        ("  **4**  ", 0.4),
        ("Score: 12", 1.0),
        ("Yes.", 1.0),
        ("Correct", 1.0),
        ("No, it is wrong", 0.0),
        ("The answer is not correct", 0.0),
        ("hmm, hard to say", None),
        ("", None),
    ],
)
def test_judge_replies_are_parsed_robustly(reply: str, quality: float | None) -> None:
    assert parse_judge_reply(reply) == quality


def test_judge_prompt_is_fixed() -> None:
    messages = judge_messages("What is 2+2?", {"answer": 4}, "4")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("You are a strict grader.")
    assert messages[1]["content"] == (
        "## Task\nWhat is 2+2?\n\n## Reference answer\n{\"answer\": 4}\n\n## Candidate answer\n4\n\nReply with 'Score: N' (0-10)."
    )
    assert "Reference" not in judge_messages("t", None, "a")[1]["content"]


def test_other_scorers_are_not_offline() -> None:
    with pytest.raises(
        ValueError,
        match="score_text handles exact, choice, numeric, f1, json; got 'code', which runs as a subprocess through the benchmark runner",
    ):
        score_text("code", "x", "assert True")
    with pytest.raises(ValueError, match="'scorer' must be one of exact, choice, numeric, f1, json, code, judge"):
        check_reference("bleu", "x")


# -- pinned fixes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,number",
    [
        ("pages 10-15", 15.0),
        ("the range is 3-5 apples", 5.0),
        ("on 2024-05-01", 1.0),
        ("x=-3", -3.0),
        ("(-2.5)", -2.5),
        ("The answer is: 5 apples, not 6", 5.0),
        ("The answer is **12** (not 13)", 12.0),
        ("5\u22123 = 2, answer: \u22121", -1.0),
    ],
)
def test_a_hyphen_is_not_a_minus_and_answer_is_colon_counts(text: str, number: float) -> None:
    assert extract_number(text) == number


@pytest.mark.parametrize(
    "text,letter",
    [
        ("The answer I gave was wrong; it is (C).", "C"),
        ("Answer: I think it's C", None),
        ("The answer is B. Answer A is wrong because 3 is odd.", "B"),
        ("The answer is: A) Paris", "A"),
        ("The answer is I.", "I"),
        ("Answer: (I) because", "I"),
    ],
)
def test_choice_does_not_read_the_pronoun_i_or_answer_x_as_the_choice(text: str, letter: str | None) -> None:
    assert extract_choice(text) == letter


def test_f1_of_exactly_one_half_is_correct_at_the_half_threshold() -> None:
    # 6 shared words, 11 predicted, 13 referenced: 2*6/24 = 0.5 exactly (2PR/(P+R) gave 0.4999999999999999)
    pred, ref = " ".join(f"w{i}" for i in range(11)), " ".join([f"w{i}" for i in range(6)] + [f"x{i}" for i in range(7)])
    assert token_f1(pred, ref) == 0.5 and score_text("f1", pred, ref).quality >= DEFAULT_THRESHOLDS["f1"]
    got = field_f1({f"k{i}": i for i in range(11)}, {**{f"k{i}": i for i in range(6)}, **{f"z{i}": i for i in range(7)}})
    assert got == 0.5


def test_draft4_boolean_exclusive_bounds() -> None:
    schema = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1, "exclusiveMaximum": False}
    assert validate_json(0.5, schema) == [] and validate_json(1, schema) == []
    assert validate_json(0, schema) == ["$: 0 is outside the allowed range"]
    at_least_zero = {"type": "number", "minimum": 0, "exclusiveMinimum": False}
    assert validate_json(-1, at_least_zero) == ["$: -1 is outside the allowed range"] and validate_json(0, at_least_zero) == []


def test_a_schema_only_json_prompt_with_an_unusable_schema_is_refused_up_front() -> None:
    with pytest.raises(
        ValueError,
        match=r"the output_schema cannot be used to validate answers \(Malformed output_schema: "
        r"the object is empty",
    ):
        check_reference("json", None, {"order": {}})


@pytest.mark.parametrize("reply,quality", [("**Score**: 8", 0.8), ("The score is 6.", 0.6), ("__Score__ = 5", 0.5), ("underscore 5", None)])
def test_judge_markdown_and_score_is(reply: str, quality: float | None) -> None:
    assert parse_judge_reply(reply) == quality


@pytest.mark.parametrize(
    "ending", ["import sys\nsys.exit(0)", "exit()", "import unittest\nif __name__ == '__main__':\n    unittest.main()"]
)
def test_code_that_exits_before_the_tests_fails(ending: str) -> None:
    got = score_code(f"def add(a, b):\n    return a - b\n{ending}\n", "assert add(2, 3) == 5")
    assert got.quality == 0.0 and got.detail.startswith("tests failed (exit 3): SystemExit(")
    assert got.detail.endswith("in the answer's code, before the reference tests ran")
    unittest_tests = (
        "import unittest\nclass T(unittest.TestCase):\n    def test(self):\n        self.assertEqual(add(2, 3), 5)\nunittest.main()"
    )
    # exiting after the tests is fine
    assert score_code("def add(a, b):\n    return a + b", unittest_tests).detail == "tests passed"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_what_the_code_started_does_not_outlive_it(tmp_path: object) -> None:
    import os
    import time
    from pathlib import Path

    pid_file = Path(str(tmp_path), "pid")
    code = (
        f"import subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
    )
    assert score_code(code, "").detail == "tests passed"
    pid = int(pid_file.read_text())

    def alive() -> bool:
        try:
            return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
        except (FileNotFoundError, IndexError):
            return False

    deadline = time.monotonic() + 5
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive():  # do not leave it behind even when the test fails
        os.kill(pid, 9)
        pytest.fail("the background process outlived score_code")


@pytest.mark.parametrize(
    ("answer", "tests"),
    [
        ("import os\ndef add(a, b):\n    return a - b\nos._exit(0)", "assert add(2, 3) == 5"),  # before the tests
        ("import os\ndef add(a, b):\n    return a - b", "import os\nos._exit(0)\nassert add(2, 3) == 5"),
        ("import atexit, os\ndef add(a, b):\n    return a - b\natexit.register(os._exit, 0)\nraise SystemExit(0)", "assert add(2, 3) == 5"),
    ],
)
def test_an_exit_status_of_0_without_the_tests_finishing_fails(answer: str, tests: str) -> None:
    got = score_code(answer, tests)
    assert got.quality == 0.0
    assert got.detail in (
        "the process exited 0 before the reference tests ran to their end (os._exit() or a killed interpreter?); "
        "only a run that finishes the tests passes",
        "tests failed (exit 3): SystemExit(0) in the answer's code, before the reference tests ran",
    )


def test_the_answer_sees_an_empty_stdin_not_the_sentinel_pipe() -> None:
    probe = "import sys\nassert sys.stdin.read() == ''\ndef add(a, b):\n    return a + b"
    assert score_code(probe, "assert add(2, 3) == 5").detail == "tests passed"
