"""Output-schema signals: how much structure the caller expects back, as a few numbers.

The article's heuristic only asks *whether* a schema came with the request (``is_structured``).
The learned router also sees its size: a three-label enum is a tier1 job, a forty-field nested
extraction may not be. Every form a caller may send is accepted and detected automatically: None,
a JSON Schema, an OpenAI ``response_format``, OpenAI/legacy/Anthropic tools, an enum list, the
article's compact ``{"field": "a | b"}`` form, or a JSON string of any of those. Malformed input
raises :class:`~tierroute.errors.FeatureError` whose message starts with
``"Malformed output_schema: "``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from tierroute.errors import FeatureError, describe
from tierroute.schema_summary import NO_SCHEMA, SCHEMA_FEATURE_NAMES, SCHEMA_KINDS, SchemaSummary

__all__ = ["SCHEMA_KINDS", "SCHEMA_FEATURE_NAMES", "SchemaSummary", "NO_SCHEMA", "summarize_schema"]

_PREFIX = "Malformed output_schema: "
_MAX_NESTING = 64  # schema nodes on one path; real schemas stay far below, cycles hit it fast
_TYPE_NAMES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array", "any"})
# A dict is read as JSON Schema when it has "properties"/"$schema", or when all its keys are
# keywords (or "x-" extensions) and one of them is structural. Otherwise it is the compact form.
_STRUCTURAL = frozenset(
    {
        "type",
        "properties",
        "required",
        "items",
        "prefixItems",
        "anyOf",
        "oneOf",
        "allOf",
        "enum",
        "const",
        "$ref",
        "$defs",
        "definitions",
        "additionalProperties",
    }
)
_KEYWORDS = _STRUCTURAL | frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "$anchor",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "nullable",
        "deprecated",
        "readOnly",
        "writeOnly",
        "not",
        "patternProperties",
        "propertyNames",
        "contains",
        "minContains",
        "maxContains",
        "dependentRequired",
        "dependentSchemas",
        "if",
        "then",
        "else",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contentEncoding",
        "contentMediaType",
        "strict",
    }
)
_TOOLS_KEYS = frozenset({"tools", "functions", "tool_choice", "parallel_tool_calls"})
_SCALARS = (str, int, float, bool)


class _Tally:
    """Running counts while walking one schema (local to one call)."""

    __slots__ = ("fields", "required", "enum_fields", "enum_values", "depth")

    def __init__(self) -> None:
        self.fields = self.required = self.enum_fields = self.enum_values = self.depth = 0

    def summary(self, kind: str, n_tools: int = 0) -> SchemaSummary:
        return SchemaSummary(True, kind, self.fields, self.required, self.enum_fields, self.enum_values, max(1, self.depth), n_tools)


def _fail(problem: str, value: object, todo: str) -> FeatureError:
    return FeatureError(f"{_PREFIX}{problem}; got {describe(value)}. {todo}")


def _check_nesting(nest: int, path: str) -> None:
    if nest > _MAX_NESTING:
        where = path if len(path) <= 60 else "..." + path[-57:]
        raise FeatureError(
            f"{_PREFIX}the schema is nested more than {_MAX_NESTING} levels deep (at {where}). "
            "Flatten it, or check it for a self-reference."
        )


def _is_json_schema(d: Mapping[object, object]) -> bool:
    if "properties" in d or "$schema" in d:
        return True
    if not all(isinstance(k, str) and (k in _KEYWORDS or k.startswith("x-")) for k in d):
        return False
    if not _STRUCTURAL.intersection(d):
        return False
    kind = d.get("type")  # {"type": "billing | refund"} is a compact field named "type"
    return kind is None or isinstance(kind, list) or (isinstance(kind, str) and kind in _TYPE_NAMES)


def _walk(node: object, parent_level: int, nest: int, tally: _Tally, path: str) -> None:
    """Add one JSON Schema node (and everything under it) to ``tally``."""
    _check_nesting(nest, path)
    if isinstance(node, bool):  # true/false are valid (accept-all / accept-none) schemas
        return
    if not isinstance(node, Mapping):
        raise _fail(f"the schema at {path} must be an object", node, 'Send e.g. {"type": "string"}.')
    props = node.get("properties")
    if props is not None and not isinstance(props, Mapping):
        raise _fail(
            f"'properties' at {path} must be an object mapping field names to schemas",
            props,
            'Send e.g. "properties": {"order_id": {"type": "string"}}.',
        )
    level = parent_level + 1 if props else parent_level
    tally.depth = max(tally.depth, level)
    if "enum" in node:
        values = node["enum"]
        if not isinstance(values, list) or not values:
            raise _fail(
                f"'enum' at {path} must be a non-empty list of allowed values", values, 'Send e.g. "enum": ["billing", "technical"].'
            )
        tally.enum_fields += 1
        tally.enum_values += len(values)
    elif "const" in node:
        tally.enum_fields += 1
        tally.enum_values += 1
    if "required" in node:
        required = node["required"]
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _fail(f"'required' at {path} must be a list of field names", required, 'Send e.g. "required": ["order_id"].')
        tally.required += len(required)
    for name, sub in (props or {}).items():
        tally.fields += 1
        _walk(sub, level, nest + 1, tally, f"{path}.properties.{name}")
    for key in ("items", "prefixItems", "additionalProperties"):
        sub = node.get(key)
        subs = sub if isinstance(sub, list) else [] if sub is None else [sub]
        for i, item in enumerate(subs):
            _walk(item, level, nest + 1, tally, f"{path}.{key}" + (f"[{i}]" if isinstance(sub, list) else ""))
    for key in ("anyOf", "oneOf", "allOf"):  # alternatives stand where the node stands
        if key in node:
            branches = node[key]
            if not isinstance(branches, list):
                raise _fail(
                    f"'{key}' at {path} must be a list of schemas",
                    branches,
                    f'Send e.g. "{key}": [{{"type": "string"}}, {{"type": "null"}}].',
                )
            for i, branch in enumerate(branches):
                _walk(branch, parent_level, nest + 1, tally, f"{path}.{key}[{i}]")
    for key in ("$defs", "definitions"):
        if key in node:
            defs = node[key]
            if not isinstance(defs, Mapping):
                raise _fail(
                    f"'{key}' at {path} must be an object mapping names to schemas",
                    defs,
                    f'Send e.g. "{key}": {{"Address": {{"type": "object", ...}}}}.',
                )
            for name, sub in defs.items():
                _walk(sub, level, nest + 1, tally, f"{path}.{key}.{name}")


def _json_schema(root: Mapping[object, object], kind: str) -> SchemaSummary:
    tally = _Tally()
    _walk(root, 0, 1, tally, "$")
    if tally.fields == 0 and tally.enum_fields:  # the whole output is one constrained value
        tally.fields = 1
    return tally.summary(kind)


def _compact_value(value: object, level: int, nest: int, tally: _Tally, path: str) -> None:
    """One value of the compact form: a type name, "a | b | c", a nested dict, or [element]."""
    _check_nesting(nest, path)
    if isinstance(value, str):
        if "|" in value:
            options = [part.strip() for part in value.split("|")]
            if not all(options):
                raise _fail(
                    f"the compact value at {path} has an empty alternative", value, 'Write alternatives like "billing | technical | other".'
                )
            if not all(option.lower() in _TYPE_NAMES for option in options):  # "string | null" is a type
                tally.enum_fields += 1
                tally.enum_values += len(options)
    elif isinstance(value, Mapping):
        if _is_json_schema(value):  # {"order_id": {"type": "string"}}: a JSON Schema per field
            _walk(value, level, nest, tally, path)
        else:
            _compact_object(value, level + 1, nest, tally, path, top=False)
    elif isinstance(value, (list, tuple)):
        if len(value) == 1:  # ["string"]: an array of that element
            _compact_value(value[0], level, nest + 1, tally, f"{path}[0]")
        elif len(value) >= 2 and all(isinstance(v, _SCALARS) for v in value):  # allowed values
            tally.enum_fields += 1
            tally.enum_values += len(value)
        else:
            raise _fail(
                f"the compact list at {path} must be [element] or a list of allowed values",
                value,
                'Send e.g. ["string"] for an array, or ["billing", "technical"] for a choice.',
            )
    else:
        raise _fail(
            f"the compact value at {path} must be a type name string, an object or a list",
            value,
            'Send e.g. "string", "a | b | c", {"nested": "string"} or ["string"].',
        )


def _compact_object(obj: Mapping[object, object], level: int, nest: int, tally: _Tally, path: str, *, top: bool) -> None:
    _check_nesting(nest, path)
    if obj:
        tally.depth = max(tally.depth, level)
    for name, value in obj.items():
        tally.fields += 1
        tally.required += int(top)  # the compact form cannot mark a field optional
        _compact_value(value, level, nest + 1, tally, f"{path}.{name}")


def _tools(tools: list[object] | tuple[object, ...]) -> SchemaSummary:
    tally = _Tally()
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise _fail(f"tools[{i}] must be an object", tool, 'Send {"type": "function", "function": {"name": ..., "parameters": {...}}}.')
        fn = tool.get("function") if tool.get("type") == "function" and "function" in tool else tool
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise _fail(
                f"tools[{i}] has no 'name' (a non-empty string)",
                tool,
                'Name every tool: {"type": "function", "function": {"name": "get_order", ...}}.',
            )
        params = fn.get("parameters", fn.get("input_schema"))
        if params is None:
            continue
        if not isinstance(params, Mapping):
            raise _fail(
                f"tools[{i}] ({fn['name']!r}) 'parameters' must be a JSON Schema object",
                params,
                'Send {"type": "object", "properties": {...}}, or leave it out.',
            )
        sub = _Tally()
        _walk(params, 0, 1, sub, f"$.tools[{i}].parameters")
        tally.fields += sub.fields
        tally.required += sub.required
        tally.enum_fields += sub.enum_fields
        tally.enum_values += sub.enum_values
        tally.depth = max(tally.depth, sub.depth)
    return tally.summary("tools", n_tools=len(tools))


def _response_format(d: Mapping[object, object]) -> SchemaSummary:
    if d.get("type") == "json_object":
        return _Tally().summary("response_format")
    if "json_schema" not in d and "schema" not in d:
        raise _fail(
            "a response_format of type 'json_schema' needs a 'json_schema' object",
            d,
            'Send {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}.',
        )
    inner = d.get("json_schema", d)  # the Responses API puts "schema" at the top
    if not isinstance(inner, Mapping):
        raise _fail(
            "response_format 'json_schema' must be an object",
            inner,
            'Send {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}.',
        )
    schema = inner.get("schema")
    if schema is None:
        return _Tally().summary("response_format")
    if not isinstance(schema, Mapping):
        raise _fail(
            "response_format 'schema' must be a JSON Schema object", schema, 'Send "schema": {"type": "object", "properties": {...}}.'
        )
    return _json_schema(schema, "response_format")


def summarize_schema(schema: object) -> SchemaSummary:
    """Summarise an output schema of any accepted form; raise FeatureError when it is malformed.

    Detection, in order: None (or a blank/"null" string) is :data:`NO_SCHEMA`; a string is parsed
    as JSON; a list of objects is tools, a list of scalars an enum list (``n_required`` 1); a dict
    with ``tools``/``functions`` is tools, with ``"type": "json_schema" | "json_object"`` a
    ``response_format`` (``"type": "text"`` means no schema); a dict of JSON Schema keywords,
    ``{"enum": [...]}`` included, is ``json_schema``; any other dict is the compact form.

    >>> s = summarize_schema({"order_id": "string", "issue_type": "billing | technical"})
    >>> (s.kind, s.n_fields, s.n_enum_values, s.depth)
    ('compact', 2, 2, 1)
    """
    if isinstance(schema, str):
        text = schema.strip()
        if not text:
            return NO_SCHEMA  # as parse_request does
        try:
            schema = json.loads(text)
        except (ValueError, RecursionError) as exc:
            reason = "too deep or too large"
            if isinstance(exc, json.JSONDecodeError):
                reason = f"{exc.msg} at char {exc.pos}"
            raise _fail(f"the string is not valid JSON ({reason})", text, "Send the schema as a JSON object or list, or null.") from None
        if isinstance(schema, str):
            raise _fail(
                "the string decodes to another string", schema, "Send the schema itself (an object or list), not JSON encoded twice."
            )
    if schema is None:
        return NO_SCHEMA
    if isinstance(schema, (list, tuple)):
        if not schema:
            raise _fail("the list is empty", schema, "Send null when there is no schema.")
        if all(isinstance(v, Mapping) for v in schema):
            return _tools(schema)
        if all(isinstance(v, _SCALARS) for v in schema):
            return SchemaSummary(True, "enum", 1, 1, 1, len(schema), 1, 0)
        raise _fail(
            "a list must hold only tool objects or only strings/numbers/booleans (an enum list)",
            schema,
            "Send tools and allowed values separately.",
        )
    if not isinstance(schema, Mapping):
        raise _fail(
            "expected a JSON Schema, response_format, tools list, enum list, compact {field: type} object or a JSON string of one",
            schema,
            "Send null when there is no schema.",
        )
    if not schema:
        raise _fail("the object is empty", schema, "Send null when there is no schema.")
    lists = [schema[k] for k in ("tools", "functions") if k in schema]
    if lists and set(schema) <= _TOOLS_KEYS and all(isinstance(v, list) for v in lists):
        tools = [tool for v in lists for tool in v]
        if not tools:
            raise _fail("the tools list is empty", schema, "Send null when there are no tools.")
        return _tools(tools)
    if schema.get("type") == "function" and "function" in schema:  # one tool on its own
        return _tools([schema])
    if schema.get("type") == "text" and set(schema) == {"type"}:
        return NO_SCHEMA
    if schema.get("type") in ("json_schema", "json_object"):
        return _response_format(schema)
    if _is_json_schema(schema):
        return _json_schema(schema, "json_schema")
    tally = _Tally()
    _compact_object(schema, 1, 1, tally, "$", top=True)
    return tally.summary("compact")
