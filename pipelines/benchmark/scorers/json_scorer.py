"""The ``json`` scorer: structured outputs, judged by schema validity and field-level F1.

An answer scores 0 when no JSON can be read from it or when it breaks the prompt's
``output_schema``; otherwise its quality is the field-level F1 against the reference object (or 1
when the prompt has a schema but no reference: validity alone).

- **Reading**: the whole answer as JSON; else each fenced block (```` ```json ````` first); else the
  first JSON object or array that starts anywhere in the text (trailing prose ignored).
- **Schema**: every form tierroute accepts (see :mod:`tierroute.schema`) becomes a JSON
  Schema (the compact ``{"field": "a | b"}`` form: every field required, ``"a | b"`` an enum, type
  names types; an enum list an enum; tools: the arguments of any one tool). A small built-in
  validator covers the subset routing schemas use: type, enum, const, properties, required,
  additionalProperties, items / prefixItems, min/maxItems, uniqueItems, min/maxLength, pattern,
  minimum / maximum (and exclusive), multipleOf, anyOf / oneOf / allOf / not, nullable and local
  ``$ref``s (``#/$defs/...``). Other keywords (format, ...) are not checked.
- **Field F1**: both objects are flattened into (path, value) leaves, list positions dropped
  (``$.items[].sku``), strings normalised as SQuAD, numbers compared as floats, null leaves
  ignored (absent = null); precision and recall count matching leaves as multisets.

>>> score_json('```json\\n{"order_id": "A-1", "status": "shipped"}\\n```', {"order_id": "A-1", "status": "lost"}, None).quality
0.5
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from tierroute.errors import FeatureError
from tierroute.pipelines.benchmark.scorers.base import Score, ScorerSpec, normalize_answer
from tierroute.schema import summarize_schema

__all__ = ["extract_json", "to_json_schema", "validate_json", "field_f1", "score_json", "check_json_reference", "SCORER_SPECS"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)```", re.S)
_TYPES = {"string", "number", "integer", "boolean", "null", "object", "array", "any"}
_MAX_ERRORS = 5


def extract_json(text: str) -> Any:
    """The JSON value an answer holds (see the module doc for where it looks), or None when there
    is none (a literal ``null`` answer reads as none too)."""
    for candidate in _candidates(text):
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"[{\[]", text)][:50]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        return value
    return None


def _candidates(text: str) -> list[str]:
    blocks = _FENCE.findall(text)
    fenced = [body for tag, body in blocks if tag.lower() == "json"] + [b for t, b in blocks if t.lower() != "json"]
    return [text.strip(), *fenced]


# -- schema forms -> JSON Schema ----------------------------------------------------------------------


def _compact(value: Any) -> Any:
    if isinstance(value, str):
        options = [part.strip() for part in value.split("|")]
        if all(o.lower() in _TYPES for o in options):
            types = [o.lower() for o in options]
            return {} if "any" in types else {"type": types[0] if len(types) == 1 else types}
        return {"enum": options} if len(options) > 1 else {}  # one free word is a description
    if isinstance(value, Mapping):
        if summarize_schema(value).kind == "json_schema":
            return dict(value)
        return {"type": "object", "properties": {k: _compact(v) for k, v in value.items()}, "required": list(value)}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "items": _compact(value[0])} if len(value) == 1 else {"enum": list(value)}
    return {}


def _tool_parameters(tools: list[Any]) -> Any:
    params = []
    for tool in tools:
        fn = tool.get("function", tool) if tool.get("type") == "function" else tool
        params.append(fn.get("parameters", fn.get("input_schema", True)))
    return params[0] if len(params) == 1 else {"anyOf": params}


def to_json_schema(output_schema: Any) -> Any:
    """The JSON Schema an answer must satisfy for ``output_schema`` (any accepted form), or None
    when there is no schema. Raises FeatureError for a malformed schema."""
    if isinstance(output_schema, str):
        output_schema = json.loads(output_schema) if output_schema.strip() else None
    kind = summarize_schema(output_schema).kind
    if kind == "none":
        return None
    if kind == "enum":
        return {"enum": list(output_schema)}
    if kind == "json_schema":
        return output_schema
    if kind == "compact":
        return _compact(output_schema)
    if kind == "response_format":
        if output_schema.get("type") == "json_object":
            return {"type": ["object", "array"]}
        inner = output_schema.get("json_schema", output_schema)
        return inner.get("schema") or {"type": ["object", "array"]}
    tools = (
        output_schema
        if isinstance(output_schema, list)
        else (
            [output_schema]
            if output_schema.get("type") == "function"
            else [t for k in ("tools", "functions") for t in output_schema.get(k, [])]
        )
    )
    return _tool_parameters(tools)


# -- the validator ----------------------------------------------------------------------------------


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    return {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "any": lambda v: True,
    }.get(kind, lambda v: True)(value)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return True  # remote refs are not fetched: accept
    node = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return True
        node = node[part]
    return node


def _check(value: Any, schema: Any, root: Any, path: str, errors: list[str], depth: int = 0) -> None:
    if len(errors) >= _MAX_ERRORS or depth > 64 or not isinstance(schema, (Mapping, bool)) or schema is True:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, path, errors, depth + 1)
    if value is None and schema.get("nullable") is True:
        return
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(value, k) for k in kinds):
            errors.append(f"{path}: expected {' or '.join(map(str, kinds))}; got {json.dumps(value)[:60]}")
            return
    if "enum" in schema and isinstance(schema["enum"], list) and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {json.dumps(value)[:60]} is not one of {json.dumps(schema['enum'])[:80]}")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: expected the constant {json.dumps(schema['const'])[:60]}")
    if isinstance(value, dict):
        _check_object(value, schema, root, path, errors, depth)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, errors, depth)
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            errors.append(f"{path}: string length {len(value)} is outside the allowed range")
        if isinstance(schema.get("pattern"), str) and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value[:40]!r} does not match the pattern {schema['pattern']!r}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path, errors)
    for key in ("allOf", "anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list):
            passed = sum(not _errors(value, b, root, path, depth + 1) for b in branches)
            if (key == "allOf" and passed < len(branches)) or (key == "anyOf" and not passed) or (key == "oneOf" and passed != 1):
                errors.append(f"{path}: matches {passed} of the {len(branches)} '{key}' alternatives")
    if "not" in schema and not _errors(value, schema["not"], root, path, depth + 1):
        errors.append(f"{path}: matches the schema under 'not'")


def _errors(value: Any, schema: Any, root: Any, path: str, depth: int) -> list[str]:
    found: list[str] = []
    _check(value, schema, root, path, found, depth)
    return found


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], root: Any, path: str, errors: list[str], depth: int) -> None:
    props: Mapping[str, Any] = schema["properties"] if isinstance(schema.get("properties"), Mapping) else {}
    for name in schema.get("required", []) if isinstance(schema.get("required"), list) else []:
        if name not in value:
            errors.append(f"{path}: the required field {name!r} is missing")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            _check(item, props[name], root, f"{path}.{name}", errors, depth + 1)
        elif extra is False:
            errors.append(f"{path}: field {name!r} is not allowed (additionalProperties is false)")
        elif isinstance(extra, Mapping):
            _check(item, extra, root, f"{path}.{name}", errors, depth + 1)


def _check_array(value: list[Any], schema: Mapping[str, Any], root: Any, path: str, errors: list[str], depth: int) -> None:
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
        errors.append(f"{path}: {len(value)} items is outside the allowed range")
    if schema.get("uniqueItems") is True and any(_same(a, b) for i, a in enumerate(value) for b in value[i + 1 :]):
        errors.append(f"{path}: items must be unique")
    prefix = schema.get("prefixItems") or (schema["items"] if isinstance(schema.get("items"), list) else [])
    items = schema.get("items") if isinstance(schema.get("items"), (Mapping, bool)) else True
    for i, item in enumerate(value):
        _check(item, prefix[i] if i < len(prefix) else items, root, f"{path}[{i}]", errors, depth + 1)


def _check_number(value: float, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    low, high = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    ex_low, ex_high = schema.get("exclusiveMinimum", -math.inf), schema.get("exclusiveMaximum", math.inf)
    if isinstance(ex_low, bool):  # draft 4: a flag that makes "minimum" exclusive
        low, ex_low = (-math.inf, low) if ex_low else (low, -math.inf)
    if isinstance(ex_high, bool):
        high, ex_high = (math.inf, high) if ex_high else (high, math.inf)
    if not (value >= low and value <= high and value > ex_low and value < ex_high):
        errors.append(f"{path}: {value:g} is outside the allowed range")
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0 and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
        errors.append(f"{path}: {value:g} is not a multiple of {step:g}")


def validate_json(value: Any, schema: Any) -> list[str]:
    """The first few ways ``value`` breaks ``schema`` (a JSON Schema), as ``$.path: problem``
    lines; empty when it is valid (or there is no schema)."""
    return [] if schema is None else _errors(value, schema, schema, "$", 0)


# -- field-level F1 ----------------------------------------------------------------------------------


def _leaves(value: Any, path: str, out: Counter[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _leaves(item, f"{path}.{key}", out)
    elif isinstance(value, list):
        for item in value:
            _leaves(item, f"{path}[]", out)
    elif isinstance(value, bool):
        out[(path, "true" if value else "false")] += 1
    elif isinstance(value, (int, float)):
        out[(path, f"{float(value):.12g}")] += 1
    elif isinstance(value, str):
        out[(path, normalize_answer(value))] += 1


def field_f1(prediction: Any, reference: Any) -> float:
    """Field-level F1 between two JSON values (see the module doc); 1.0 when both have no leaves."""
    pred: Counter[tuple[str, str]] = Counter()
    ref: Counter[tuple[str, str]] = Counter()
    _leaves(prediction, "$", pred)
    _leaves(reference, "$", ref)
    if not pred or not ref:
        return float(not pred and not ref)
    same = sum((pred & ref).values())
    return 2 * same / (sum(pred.values()) + sum(ref.values()))  # = 2PR/(P+R), without its rounding error


def check_json_reference(reference: Any, output_schema: Any) -> Any:
    """The reference as a JSON value (a JSON string is parsed); ValueError when it or the schema
    cannot serve."""
    try:  # also for a schema-only prompt, whose every answer would otherwise be a scorer_error
        to_json_schema(output_schema)
    except (FeatureError, ValueError) as exc:
        raise ValueError(f"the output_schema cannot be used to validate answers ({exc})") from None
    if reference is None:
        if output_schema is None:
            raise ValueError("the 'json' scorer needs a 'reference' object, an 'output_schema', or both")
        return None
    if isinstance(reference, str):
        try:
            reference = json.loads(reference)
        except ValueError:
            raise ValueError("a 'json' reference must be a JSON object/array (or a string holding one)") from None
    if not isinstance(reference, (dict, list)):
        raise ValueError("a 'json' reference must be a JSON object/array (or a string holding one)")
    return reference


def score_json(response: str, reference: Any, output_schema: Any) -> Score:
    """Quality of a structured answer: 0 if unreadable or schema-invalid, else field F1 (1 with no
    reference)."""
    value = extract_json(response)
    if value is None:
        return Score(0.0, "no JSON found in the answer")
    problems = validate_json(value, to_json_schema(output_schema))
    if problems:
        return Score(0.0, "schema violated: " + "; ".join(problems))
    if reference is None:
        return Score(1.0, "valid against the schema")
    f1 = field_f1(value, reference)
    return Score(f1, f"valid JSON; field F1 {f1:.3f}")


SCORER_SPECS = (ScorerSpec("json", 0.5, check_json_reference, score_json, rank=4),)
