"""Tests for tierroute.schema: every accepted form, hand-computed, and every malformed one."""

from __future__ import annotations

import json
import re

import pytest

from tierroute.errors import FeatureError
from tierroute.schema import NO_SCHEMA, SCHEMA_FEATURE_NAMES, SCHEMA_KINDS, SchemaSummary, summarize_schema

PREFIX = "Malformed output_schema: "

ARTICLE_COMPACT = {"order_id": "string", "customer_id": "string", "issue_type": "billing | technical | shipping | other"}

# object -> array of objects: depth 2
NESTED_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "invoice_id": {"type": "string"},
        "status": {"type": "string", "enum": ["paid", "open", "void"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}, "currency": {"const": "EUR"}},
                "required": ["sku", "qty"],
            },
        },
    },
    "required": ["invoice_id", "lines"],
}

STRICT_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "ticket",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "issue_type": {"type": "string", "enum": ["billing", "technical", "shipping", "other"]},
            },
            "required": ["order_id", "issue_type"],
            "additionalProperties": False,
        },
    },
}

GET_ORDER = {
    "name": "get_order",
    "description": "Look an order up.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
}
REFUND = {
    "name": "refund",
    "parameters": {
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "reason": {"type": "string", "enum": ["damaged", "late", "other"]},
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        },
        "required": ["order_id", "reason"],
    },
}
TWO_TOOLS = [{"type": "function", "function": GET_ORDER}, {"type": "function", "function": REFUND}]
# fields 1 + 4, required 1 + 2, one enum of 3 values, depth max(1, 2), 2 tools
TWO_TOOLS_SUMMARY = SchemaSummary(True, "tools", 5, 3, 1, 3, 2, 2)


def nested_objects(levels: int) -> dict[str, object]:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(None, NO_SCHEMA, id="none"),
        pytest.param(ARTICLE_COMPACT, SchemaSummary(True, "compact", 3, 3, 1, 4, 1, 0), id="article-compact"),
        pytest.param(NESTED_JSON_SCHEMA, SchemaSummary(True, "json_schema", 6, 4, 2, 4, 2, 0), id="nested"),
        pytest.param(STRICT_RESPONSE_FORMAT, SchemaSummary(True, "response_format", 2, 2, 1, 4, 1, 0), id="strict"),
        pytest.param({"type": "json_object"}, SchemaSummary(True, "response_format", 0, 0, 0, 0, 1, 0), id="json-object"),
        pytest.param({"type": "text"}, NO_SCHEMA, id="response-format-text"),
        pytest.param(TWO_TOOLS, TWO_TOOLS_SUMMARY, id="tools-list"),
        pytest.param({"tools": TWO_TOOLS, "tool_choice": "auto"}, TWO_TOOLS_SUMMARY, id="tools-dict"),
        pytest.param({"functions": [GET_ORDER, REFUND]}, TWO_TOOLS_SUMMARY, id="legacy-functions"),
        pytest.param([GET_ORDER, REFUND], TWO_TOOLS_SUMMARY, id="bare-name-parameters"),
        pytest.param({"type": "function", "function": GET_ORDER}, SchemaSummary(True, "tools", 1, 1, 0, 0, 1, 1), id="single-tool"),
        pytest.param([{"name": "ping"}], SchemaSummary(True, "tools", 0, 0, 0, 0, 1, 1), id="tool-no-parameters"),
        pytest.param(
            [{"name": "f", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
            SchemaSummary(True, "tools", 1, 0, 0, 0, 1, 1),
            id="anthropic-input-schema",
        ),
        pytest.param(["billing", "technical", "shipping"], SchemaSummary(True, "enum", 1, 1, 1, 3, 1, 0), id="enum"),
        pytest.param([1, 2.5, True], SchemaSummary(True, "enum", 1, 1, 1, 3, 1, 0), id="enum-scalars"),
        pytest.param({"enum": ["a", "b", "c"]}, SchemaSummary(True, "json_schema", 1, 0, 1, 3, 1, 0), id="enum-dict"),
        pytest.param({"type": "string"}, SchemaSummary(True, "json_schema", 0, 0, 0, 0, 1, 0), id="bare-string"),
        pytest.param(
            {"type": "array", "items": {"enum": ["x", "y"]}}, SchemaSummary(True, "json_schema", 1, 0, 1, 2, 1, 0), id="array-of-labels"
        ),
    ],
)
def test_summaries(schema: object, expected: SchemaSummary) -> None:
    assert summarize_schema(schema) == expected


def test_defs_anyof_and_ref() -> None:
    schema = {
        "$defs": {
            "Address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}, "required": ["city"]}
        },
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "home": {"$ref": "#/$defs/Address"},
            "contact": {"anyOf": [{"type": "object", "properties": {"email": {"type": "string"}}}, {"type": "null"}]},
        },
    }
    # fields name, home, contact, street, city, email; the def and the anyOf object sit one level down
    assert summarize_schema(schema) == SchemaSummary(True, "json_schema", 6, 1, 0, 0, 2, 0)


def test_root_ref_to_definition_is_depth_one() -> None:
    schema = {"$ref": "#/definitions/A", "definitions": {"A": {"type": "object", "properties": {"x": True}}}}
    assert summarize_schema(schema) == SchemaSummary(True, "json_schema", 1, 0, 0, 0, 1, 0)


def test_compact_nested_lists_and_type_unions() -> None:
    schema = {
        "customer": {"name": "string", "tier": "gold | silver"},
        "tags": ["string"],
        "items": [{"sku": "string", "qty": "integer"}],
        "note": "string | null",  # a type union, not a choice of values
        "label": ["spam", "ham", "other"],  # a list of allowed values
    }
    # fields: customer, name, tier, tags, items, sku, qty, note, label; required: the 5 top-level ones
    assert summarize_schema(schema) == SchemaSummary(True, "compact", 9, 5, 2, 5, 2, 0)


def test_compact_with_json_schema_values_and_a_field_named_type() -> None:
    per_field = {"order_id": {"type": "string"}, "status": {"enum": ["a", "b"]}}
    assert summarize_schema(per_field) == SchemaSummary(True, "compact", 2, 2, 1, 2, 1, 0)
    assert summarize_schema({"type": "billing | refund"}) == SchemaSummary(True, "compact", 1, 1, 1, 2, 1, 0)
    assert summarize_schema({"type": "string", "amount": "number"}).kind == "compact"
    # an object value under "type" is no JSON Schema type: a nested compact field (found by fuzzing)
    assert summarize_schema({"type": {"a": "string"}}) == SchemaSummary(True, "compact", 2, 1, 0, 0, 2, 0)


def test_json_string_form_matches_the_object() -> None:
    assert summarize_schema(json.dumps(ARTICLE_COMPACT)) == summarize_schema(ARTICLE_COMPACT)
    assert summarize_schema(json.dumps(STRICT_RESPONSE_FORMAT)) == summarize_schema(STRICT_RESPONSE_FORMAT)
    assert summarize_schema('["a", "b"]').kind == "enum"
    assert summarize_schema("null") is NO_SCHEMA
    assert summarize_schema("  ") is NO_SCHEMA  # blank, as parse_request treats it


def test_nesting_up_to_the_cap_is_accepted() -> None:
    assert summarize_schema(nested_objects(63)).depth == 63


def test_as_vector_follows_feature_names() -> None:
    summary = summarize_schema(TWO_TOOLS)
    vector = summary.as_vector()
    assert len(vector) == len(SCHEMA_FEATURE_NAMES) == 12
    assert all(isinstance(v, float) for v in vector)
    named = dict(zip(SCHEMA_FEATURE_NAMES, vector, strict=True))
    assert named["schema_present"] == 1.0
    assert named["schema_kind_tools"] == 1.0
    for name in SCHEMA_FEATURE_NAMES:
        if name.startswith("schema_n_") or name == "schema_depth":
            assert named[name] == getattr(summary, name.removeprefix("schema_"))
    assert SCHEMA_FEATURE_NAMES[:6] == ("schema_present", *(f"schema_kind_{k}" for k in SCHEMA_KINDS[1:]))


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_kind_one_hot(kind: str) -> None:
    vector = SchemaSummary(kind != "none", kind, 0, 0, 0, 0, 0, 0).as_vector()
    hot = [name for name, v in zip(SCHEMA_FEATURE_NAMES[1:6], vector[1:6], strict=True) if v]
    assert hot == ([] if kind == "none" else [f"schema_kind_{kind}"])


def test_no_schema_is_all_zeros() -> None:
    assert NO_SCHEMA.as_vector() == (0.0,) * 12
    assert (NO_SCHEMA.present, NO_SCHEMA.kind) == (False, "none")


def test_summary_rejects_unknown_kind() -> None:
    with pytest.raises(FeatureError, match=r"kind must be one of .*got 'xml' \(str\)"):
        SchemaSummary(True, "xml", 0, 0, 0, 0, 0, 0)


def cyclic() -> dict[str, object]:
    loop: dict[str, object] = {}
    loop["a"] = loop
    return loop


MALFORMED = [
    pytest.param(42, r"expected a JSON Schema, response_format, .*; got 42 \(int\)\. Send null", id="number"),
    pytest.param(True, r"; got True \(bool\)\. Send null when there is no schema", id="bool"),
    pytest.param(b"{}", r"; got b'\{\}' \(bytes\)", id="bytes"),
    pytest.param([], r"the list is empty; got \[\] \(list\)\. Send null when there is no schema\.", id="empty-list"),
    pytest.param({}, r"the object is empty; got \{\} \(dict\)\. Send null when there is no schema\.", id="empty-dict"),
    pytest.param({"tools": []}, r"the tools list is empty; .*Send null when there are no tools", id="empty-tools"),
    pytest.param([{"name": "f"}, "billing"], r"a list must hold only tool objects or only strings", id="mixed-list"),
    pytest.param(["a", ["b"]], r"a list must hold only .*got \['a', \['b'\]\] \(list\)", id="nested-enum"),
    pytest.param({"tools": [{"name": "f"}, "b"]}, r"tools\[1\] must be an object; got 'b' \(str\)", id="tool-not-obj"),
    pytest.param(
        [{"type": "function", "function": {"parameters": {}}}], r"tools\[0\] has no 'name' \(a non-empty string\)", id="tool-no-name"
    ),
    pytest.param([{"name": "  "}], r"tools\[0\] has no 'name'.*Name every tool", id="tool-blank-name"),
    pytest.param(
        [{"name": "f", "parameters": "string"}],
        r"tools\[0\] \('f'\) 'parameters' must be a JSON Schema object; got 'string' \(str\)",
        id="tool-params",
    ),
    pytest.param(
        {"type": "object", "properties": ["a", "b"]},
        r"'properties' at \$ must be an object mapping field names to schemas; got \['a', 'b'\] \(list\)",
        id="properties-list",
    ),
    pytest.param(
        {"type": "object", "properties": {"a": {"type": "object", "properties": "x"}}},
        r"'properties' at \$\.properties\.a must be an object",
        id="nested-properties",
    ),
    pytest.param(
        {"type": "object", "properties": {"a": "string"}},
        r"the schema at \$\.properties\.a must be an object; got 'string' \(str\)",
        id="property-not-schema",
    ),
    pytest.param(
        {"type": "object", "properties": {"a": {}}, "required": "a"},
        r"'required' at \$ must be a list of field names; got 'a' \(str\)",
        id="required-str",
    ),
    pytest.param({"type": "object", "required": [1]}, r"'required' at \$ must be a list of field names; got \[1\]", id="required-ints"),
    pytest.param({"enum": []}, r"'enum' at \$ must be a non-empty list of allowed values; got \[\] \(list\)", id="enum-empty"),
    pytest.param({"type": "string", "enum": "a"}, r"'enum' at \$ must be a non-empty list", id="enum-str"),
    pytest.param({"anyOf": {"type": "string"}}, r"'anyOf' at \$ must be a list of schemas", id="anyof-dict"),
    pytest.param({"type": "object", "$defs": []}, r"'\$defs' at \$ must be an object mapping names", id="defs-list"),
    pytest.param({"type": "array", "items": "string"}, r"the schema at \$\.items must be an object", id="items-str"),
    pytest.param(
        {"order_id": 5},
        r"the compact value at \$\.order_id must be a type name string, an object or a list; "
        r"got 5 \(int\)",
        id="compact-number",
    ),
    pytest.param({"a": None}, r"the compact value at \$\.a must be .*got None \(NoneType\)", id="compact-null"),
    pytest.param({"a": "x || y"}, r"the compact value at \$\.a has an empty alternative; got 'x \|\| y'", id="compact-bar"),
    pytest.param({"a": []}, r"the compact list at \$\.a must be \[element\] or a list of allowed values", id="compact-empty-list"),
    pytest.param({"a": ["string", {"b": "c"}]}, r"the compact list at \$\.a must be", id="compact-mixed-list"),
    pytest.param(
        "{not json",
        r"the string is not valid JSON \(Expecting property name enclosed in double quotes at "
        r"char 1\); got '\{not json' \(str\)\. Send the schema as a JSON object or list, or null\.",
        id="bad-json",
    ),
    pytest.param("billing | technical", r"the string is not valid JSON", id="bare-text"),
    pytest.param("[" * 100_000 + "]" * 100_000, r"the string is not valid JSON \(too deep or too large\)", id="json-deep"),
    pytest.param('"{}"', r"the string decodes to another string.*not JSON encoded twice", id="double-encoded"),
    pytest.param({"type": "json_schema"}, r"a response_format of type 'json_schema' needs a 'json_schema' object", id="rf-missing"),
    pytest.param({"type": "json_schema", "json_schema": "x"}, r"response_format 'json_schema' must be an object", id="rf-not-obj"),
    pytest.param(
        {"type": "json_schema", "json_schema": {"name": "t", "schema": []}},
        r"response_format 'schema' must be a JSON Schema object; got \[\] \(list\)",
        id="rf-schema",
    ),
    pytest.param(
        nested_objects(64),
        r"the schema is nested more than 64 levels deep \(at \.\.\..*\.properties\.a\)\. "
        r"Flatten it, or check it for a self-reference\.",
        id="too-deep",
    ),
    pytest.param(cyclic(), r"nested more than 64 levels deep", id="cyclic-compact"),
    pytest.param([{"name": "f", "parameters": nested_objects(80)}], r"nested more than 64 levels", id="too-deep-tool"),
]


@pytest.mark.parametrize(("schema", "message"), MALFORMED)
def test_malformed(schema: object, message: str) -> None:
    with pytest.raises(FeatureError, match=re.escape(PREFIX) + ".*" + message) as info:
        summarize_schema(schema)
    assert str(info.value).startswith(PREFIX)
    assert isinstance(info.value, ValueError)
