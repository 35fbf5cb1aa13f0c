"""parse_request / messages_to_prompt: every accepted form and every RequestError's wording."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tierroute.errors import RequestError
from tierroute.request import DEFAULT_MAX_PROMPT_CHARS, Request, messages_to_prompt, parse_request


def raises(message: str, exact: bool = True):
    pattern = "^" + re.escape(message) + ("$" if exact else "")
    return pytest.raises(RequestError, match=pattern)


# --------------------------------------------------------------------------------------------
# accepted forms
# --------------------------------------------------------------------------------------------


def test_request_defaults():
    r = Request("hi")
    assert (r.prompt, r.output_schema, r.latency_sla_ms) == ("hi", None, None)


def test_dict_with_prompt():
    r = parse_request({"prompt": "Pull the order id.", "output_schema": {"order_id": "string"}, "latency_sla_ms": 150})
    assert r == Request("Pull the order id.", {"order_id": "string"}, 150.0)
    assert isinstance(r.latency_sla_ms, float)


def test_dict_prompt_only_and_id_allowed():
    assert parse_request({"prompt": "hi"}) == Request("hi")
    assert parse_request({"prompt": "hi", "id": "req-1"}) == Request("hi")
    assert parse_request({"prompt": ""}) == Request("")


def test_sla_values():
    assert parse_request({"prompt": "x", "latency_sla_ms": 0}).latency_sla_ms == 0.0
    assert parse_request({"prompt": "x", "latency_sla_ms": 199.5}).latency_sla_ms == 199.5
    assert parse_request({"prompt": "x", "latency_sla_ms": None}).latency_sla_ms is None


def test_messages_with_string_content():
    r = parse_request({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]})
    assert r.prompt == "system: Be brief.\nuser: Hi?"


def test_messages_with_text_parts():
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "briefly."},
                "not a part",
            ],
        }
    ]
    assert parse_request({"messages": messages}).prompt == "user: Describe\nbriefly."


def test_messages_none_content_and_default_role():
    assert messages_to_prompt([{"content": "hi"}, {"role": "assistant", "content": None}]) == "user: hi\nassistant: "


def test_prompt_wins_over_messages_and_null_prompt_falls_back():
    assert parse_request({"prompt": "p", "messages": [{"role": "user", "content": "m"}]}).prompt == "p"
    assert parse_request({"prompt": None, "messages": [{"role": "user", "content": "m"}]}).prompt == "user: m"


def test_request_passthrough():
    req = Request("hi", ["a", "b"], 100)
    out = parse_request(req)
    assert out == req
    assert out.latency_sla_ms == 100.0


def test_request_passthrough_is_checked():
    with raises("'latency_sla_ms' must be >= 0; got -5. Send the p95 latency budget in milliseconds."):
        parse_request(Request("hi", None, -5))
    with raises("'prompt' must be a string; got 3 (int). Send the prompt text."):
        parse_request(Request(3))  # type: ignore[arg-type]


def test_schema_json_string_is_parsed():
    r = parse_request({"prompt": "x", "output_schema": ' {"order_id": "string"} '})
    assert r.output_schema == {"order_id": "string"}
    assert parse_request({"prompt": "x", "output_schema": '["a", "b"]'}).output_schema == ["a", "b"]


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_blank_schema_string_is_none(blank):
    assert parse_request({"prompt": "x", "output_schema": blank}).output_schema is None


def test_non_string_schema_kept_as_is():
    schema = {"type": "object", "properties": {}}
    assert parse_request({"prompt": "x", "output_schema": schema}).output_schema is schema


def test_max_prompt_chars_boundary():
    assert DEFAULT_MAX_PROMPT_CHARS == 4_000_000
    assert parse_request({"prompt": "x" * 10}, max_prompt_chars=10).prompt == "x" * 10


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

SEND = 'Send {"prompt": "...", "output_schema": null, "latency_sla_ms": null}.'


@pytest.mark.parametrize(
    ("data", "got"), [("hello", "'hello' (str)"), (None, "None (NoneType)"), (["prompt"], "['prompt'] (list)"), (42, "42 (int)")]
)
def test_not_a_mapping(data, got):
    with raises(f"A request must be an object with 'prompt' (or 'messages'); got {got}. {SEND}"):
        parse_request(data)


@pytest.mark.parametrize("data", [{}, {"prompt": None}, {"messages": None}, {"output_schema": {"a": "string"}}])
def test_no_prompt(data):
    with raises("The request has no 'prompt' (and no 'messages'). Send the text you would send to the model."):
        parse_request(data)


@pytest.mark.parametrize(("prompt", "got"), [(5, "5 (int)"), (b"hi", "b'hi' (bytes)"), (["hi"], "['hi'] (list)")])
def test_prompt_not_str(prompt, got):
    with raises(f"'prompt' must be a string; got {got}. Send the prompt text."):
        parse_request({"prompt": prompt})


@pytest.mark.parametrize(("sla", "shown"), [(-1, "-1"), (-0.5, "-0.5")])
def test_negative_sla(sla, shown):
    with raises(f"'latency_sla_ms' must be >= 0; got {shown}. Send the p95 latency budget in milliseconds."):
        parse_request({"prompt": "x", "latency_sla_ms": sla})


@pytest.mark.parametrize(
    ("sla", "got"),
    [
        ("150", "'150' (str)"),
        ([150], "[150] (list)"),
        (True, "True (bool)"),
        (False, "False (bool)"),
        (float("nan"), "nan (float)"),
        (float("inf"), "inf (float)"),
        (float("-inf"), "-inf (float)"),
    ],
)
def test_bad_sla_type_or_value(sla, got):
    message = (
        f"'latency_sla_ms' must be a finite number of milliseconds or null; got {got}. "
        "Send e.g. 150, or leave it out when there is no latency budget."
    )
    with raises(message):
        parse_request({"prompt": "x", "latency_sla_ms": sla})


def test_unknown_fields():
    message = "Unknown request field(s) ['promt', 'zzz']; expected prompt or messages, output_schema, latency_sla_ms"
    with pytest.raises(RequestError, match="^" + re.escape(message) + r".*Check the spelling\.$"):
        parse_request({"prompt": "x", "promt": "y", "zzz": 1})


def test_oversized_prompt():
    with raises("The prompt has 11 characters; at most 10 are accepted. Send a shorter prompt or raise max_prompt_chars."):
        parse_request({"prompt": "x" * 11}, max_prompt_chars=10)
    with raises("The prompt has 1,234 characters; at most 1,000 are accepted. Send a shorter prompt or raise max_prompt_chars."):
        parse_request({"prompt": "x" * 1234}, max_prompt_chars=1000)


def test_oversized_prompt_from_messages():
    with raises("The prompt has 12 characters; at most 5 are accepted.", exact=False):
        parse_request({"messages": [{"role": "user", "content": "abcdef"}]}, max_prompt_chars=5)


@pytest.mark.parametrize(
    ("schema", "detail"),
    [
        ("{bad", "Expecting property name enclosed in double quotes at char 1"),
        ("order_id: string", "Expecting value at char 0"),
        ('{"a": 1} trailing', "Extra data at char 9"),
    ],
)
def test_schema_string_not_json(schema, detail):
    message = f"'output_schema' is a string that is not JSON ({detail}): {schema!r} (str). Send the schema as a JSON object or list."
    with raises(message):
        parse_request({"prompt": "x", "output_schema": schema})


@pytest.mark.parametrize(
    ("messages", "got"), [("hi", "'hi' (str)"), ([], "[] (list)"), ({"role": "user"}, "{'role': 'user'} (dict)"), (5, "5 (int)")]
)
def test_messages_not_a_list(messages, got):
    message = (
        f"'messages' must be a non-empty list of {{'role', 'content'}} objects; got {got}. "
        'Send a list like [{"role": "user", "content": "..."}].'
    )
    with raises(message):
        parse_request({"messages": messages})


@pytest.mark.parametrize(("message", "got"), [("hi", "'hi' (str)"), ({"role": "user"}, "{'role': 'user'} (dict)")])
def test_message_not_an_object_with_content(message, got):
    with raises(f"messages[1] must be an object with 'role' and 'content'; got {got}. Fix that message or send 'prompt' instead."):
        parse_request({"messages": [{"role": "user", "content": "ok"}, message]})


def test_message_content_wrong_type():
    with raises("messages[0].content must be a string or a list of text parts; got 5 (int)."):
        parse_request({"messages": [{"role": "user", "content": 5}]})


def test_request_error_is_value_error():
    with pytest.raises(ValueError):
        parse_request("x")


@pytest.mark.parametrize("schema", [[], {}, {"a": 5}, "[]"])
def test_a_malformed_schema_is_a_request_error(schema: object) -> None:
    with pytest.raises(RequestError, match=r"^Malformed output_schema: .*\(in 'output_schema'\)$"):
        parse_request({"prompt": "p", "output_schema": schema})


@pytest.mark.parametrize("schema", [None, "", "null", {"type": "text"}])
def test_no_schema_in_any_spelling_is_none(schema: object) -> None:
    assert parse_request({"prompt": "p", "output_schema": schema}).output_schema is None


def test_parse_request_keeps_the_schema_summary_it_computed() -> None:
    from tierroute.features.signals import SignalExtractor
    from tierroute.schema import summarize_schema

    schema = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
    parsed = parse_request({"prompt": "Pull the order id.", "output_schema": schema})
    assert parsed.schema_summary == summarize_schema(schema)
    assert parse_request({"prompt": "x", "output_schema": "null"}).schema_summary is None
    direct = Request("Pull the order id.", schema)  # built by hand: the features compute it themselves
    assert direct.schema_summary is None and direct == parsed and "schema_summary" not in repr(parsed)
    extractor = SignalExtractor()
    np.testing.assert_array_equal(extractor.vector(direct), extractor.vector(parsed))  # NaN = no SLA, in both


# --------------------------------------------------------------------------------------------
# hostile values (issue 13): refused with a RequestError, never a RecursionError or a warning
# --------------------------------------------------------------------------------------------


def _nested(depth: int, make) -> object:
    node: object = {"order_id": "string"}
    for _ in range(depth):
        node = make(node)
    return node


@pytest.mark.parametrize(
    "make", [lambda d: [d], lambda d: {"tools": [d]}, lambda d: {"a": d}, lambda d: {"type": "json_schema", "json_schema": {"schema": d}}]
)
def test_a_schema_3000_deep_is_refused_before_it_is_walked(make) -> None:
    deep = _nested(3000, make)
    with raises("'output_schema' nests arrays/objects more than 128 levels deep; at most 128 are accepted. Flatten it", exact=False):
        parse_request({"prompt": "x", "output_schema": deep})


def test_a_schema_string_3000_deep_is_refused() -> None:
    text = "[" * 3000 + "]" * 3000
    with raises("'output_schema' nests arrays/objects more than 128 levels deep; at most 128 are accepted.", exact=False):
        parse_request({"prompt": "x", "output_schema": text})
    with raises("'output_schema' holds the token NaN, which is not JSON", exact=False):
        parse_request({"prompt": "x", "output_schema": '{"enum": [NaN]}'})


@pytest.mark.parametrize("sla", [3.5e38, 1e300, 10**40, 1e12 + 1])
def test_an_sla_beyond_any_budget_is_refused(sla) -> None:
    with raises("'latency_sla_ms' must be at most 1e+12 ms (about 31 years); got ", exact=False):
        parse_request({"prompt": "x", "latency_sla_ms": sla})
    assert parse_request({"prompt": "x", "latency_sla_ms": 1e12}).latency_sla_ms == 1e12


@pytest.mark.parametrize("sla", ["NaN", float("nan"), float("inf")])
def test_a_nan_sla_is_refused_not_made_null(sla) -> None:
    with raises("'latency_sla_ms' must be a finite number of milliseconds or null; got ", exact=False):
        parse_request({"prompt": "x", "latency_sla_ms": sla})


@pytest.mark.parametrize(("request_id", "where"), [("a\ud800b", "id"), (["ok", "\udfff"], "id[1]"), ({"k": "\ud83d"}, "id.k")])
def test_an_id_with_a_lone_surrogate_is_refused(request_id, where) -> None:
    with raises(
        f"'id' holds a lone surrogate (half of a UTF-16 pair) at {where}, which cannot be sent back as UTF-8 "
        "text; expected a string of whole characters, a number or null. Send the id as valid Unicode (ASCII "
        "is safest)."
    ):
        parse_request({"prompt": "x", "id": request_id})
    assert parse_request({"prompt": "lone \ud800 in the prompt is fine", "id": "🙂"}).prompt.startswith("lone")


def test_route_input_answers_hostile_lines_with_error_records(tmp_path, capsys) -> None:
    import io
    import json

    from tierroute.cli import main

    lines = [
        '{"id": "a\\ud800", "prompt": "Summarize this ticket."}',  # a lone surrogate in the id (an escape: valid JSON)
        '{"id": "deep", "prompt": "x", "metadata": ' + "[" * 10_000 + "]" * 10_000 + "}",
        '{"id": "big", "prompt": "x", "latency_sla_ms": ' + "9" * 5000 + "}",
        '{"id": "nan", "prompt": "x", "latency_sla_ms": NaN}',
        '{"id": "ok", "prompt": "Summarize this ticket."}',
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert main(["route", "--input", str(path), "--json"], out=out) == 2  # some lines failed; none crashed
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["id"] == "a\ud800" and records[0]["error"].startswith("'id' holds a lone surrogate")
    assert records[1]["error"] == (
        "line 2 nests arrays/objects more than 128 levels deep; at most 128 are accepted. "
        "Flatten it (or raise max_depth if it is legitimate). Each line must be one request "
        "object."
    )
    assert records[2]["error"].startswith("line 3 holds a number written with 5,000 characters")
    assert records[3]["error"].startswith("line 4 holds the token NaN, which is not JSON")
    assert records[4]["id"] == "ok" and records[4]["tier"] == "tier2"
    assert "\\ud800" in out.getvalue()  # written as its escape: the output stays valid UTF-8
