'use strict';
// Output-schema summary: a line-by-line port of tierroute/schema.py (summarize_schema).

const { FeatureError } = require('./errors');

const SCHEMA_KINDS = ['none', 'json_schema', 'response_format', 'tools', 'enum', 'compact'];
const PREFIX = 'Malformed output_schema: ';
const MAX_NESTING = 64;
const TYPE_NAMES = new Set(['string', 'number', 'integer', 'boolean', 'null', 'object', 'array', 'any']);
const STRUCTURAL = new Set(['type', 'properties', 'required', 'items', 'prefixItems', 'anyOf', 'oneOf', 'allOf', 'enum',
  'const', '$ref', '$defs', 'definitions', 'additionalProperties']);
const KEYWORDS = new Set([...STRUCTURAL, 'title', 'description', 'default', 'examples', '$schema', '$id', '$comment',
  '$anchor', 'format', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'exclusiveMinimum',
  'exclusiveMaximum', 'multipleOf', 'minItems', 'maxItems', 'uniqueItems', 'minProperties', 'maxProperties',
  'nullable', 'deprecated', 'readOnly', 'writeOnly', 'not', 'patternProperties', 'propertyNames', 'contains',
  'minContains', 'maxContains', 'dependentRequired', 'dependentSchemas', 'if', 'then', 'else',
  'unevaluatedProperties', 'unevaluatedItems', 'contentEncoding', 'contentMediaType', 'strict']);
const TOOLS_KEYS = new Set(['tools', 'functions', 'tool_choice', 'parallel_tool_calls']);

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isScalar = (v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

function summary(present, kind, nFields, nRequired, nEnumFields, nEnumValues, depth, nTools) {
  return { present, kind, n_fields: nFields, n_required: nRequired, n_enum_fields: nEnumFields,
    n_enum_values: nEnumValues, depth, n_tools: nTools };
}
const NO_SCHEMA = summary(false, 'none', 0, 0, 0, 0, 0, 0);

/** The summary as numbers, in SCHEMA_FEATURE_NAMES order. */
function schemaVector(s) {
  const oneHot = SCHEMA_KINDS.slice(1).map((k) => (s.kind === k ? 1 : 0));
  return [s.present ? 1 : 0, ...oneHot, s.n_fields, s.n_required, s.n_enum_fields, s.n_enum_values, s.depth, s.n_tools];
}

class Tally {
  constructor() { this.fields = 0; this.required = 0; this.enumFields = 0; this.enumValues = 0; this.depth = 0; }
  summary(kind, nTools = 0) {
    return summary(true, kind, this.fields, this.required, this.enumFields, this.enumValues, Math.max(1, this.depth), nTools);
  }
}

function fail(problem) { return new FeatureError(`${PREFIX}${problem}.`); }

function checkNesting(nest, path) {
  if (nest > MAX_NESTING) throw fail(`the schema is nested more than ${MAX_NESTING} levels deep (at ${path})`);
}

function isJsonSchema(d) {
  if (has(d, 'properties') || has(d, '$schema')) return true;
  const keys = Object.keys(d);
  if (!keys.every((k) => KEYWORDS.has(k) || k.startsWith('x-'))) return false;
  if (!keys.some((k) => STRUCTURAL.has(k))) return false;
  const kind = has(d, 'type') ? d.type : null;
  return kind === null || Array.isArray(kind) || (typeof kind === 'string' && TYPE_NAMES.has(kind));
}

function walk(node, parentLevel, nest, tally, path) {
  checkNesting(nest, path);
  if (typeof node === 'boolean') return;
  if (!isMap(node)) throw fail(`the schema at ${path} must be an object`);
  const props = has(node, 'properties') ? node.properties : null;
  if (props !== null && !isMap(props)) throw fail(`'properties' at ${path} must be an object mapping field names to schemas`);
  const level = props && Object.keys(props).length ? parentLevel + 1 : parentLevel;
  tally.depth = Math.max(tally.depth, level);
  if (has(node, 'enum')) {
    const values = node.enum;
    if (!Array.isArray(values) || !values.length) throw fail(`'enum' at ${path} must be a non-empty list of allowed values`);
    tally.enumFields += 1;
    tally.enumValues += values.length;
  } else if (has(node, 'const')) {
    tally.enumFields += 1;
    tally.enumValues += 1;
  }
  if (has(node, 'required')) {
    const req = node.required;
    if (!Array.isArray(req) || !req.every((r) => typeof r === 'string')) throw fail(`'required' at ${path} must be a list of field names`);
    tally.required += req.length;
  }
  for (const [name, sub] of Object.entries(props || {})) {
    tally.fields += 1;
    walk(sub, level, nest + 1, tally, `${path}.properties.${name}`);
  }
  for (const key of ['items', 'prefixItems', 'additionalProperties']) {
    const sub = has(node, key) ? node[key] : null;
    const subs = Array.isArray(sub) ? sub : sub === null ? [] : [sub];
    subs.forEach((item, i) => walk(item, level, nest + 1, tally, `${path}.${key}${Array.isArray(sub) ? `[${i}]` : ''}`));
  }
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    if (!has(node, key)) continue;
    const branches = node[key];
    if (!Array.isArray(branches)) throw fail(`'${key}' at ${path} must be a list of schemas`);
    branches.forEach((b, i) => walk(b, parentLevel, nest + 1, tally, `${path}.${key}[${i}]`));
  }
  for (const key of ['$defs', 'definitions']) {
    if (!has(node, key)) continue;
    const defs = node[key];
    if (!isMap(defs)) throw fail(`'${key}' at ${path} must be an object mapping names to schemas`);
    for (const [name, sub] of Object.entries(defs)) walk(sub, level, nest + 1, tally, `${path}.${key}.${name}`);
  }
}

function jsonSchema(root, kind) {
  const tally = new Tally();
  walk(root, 0, 1, tally, '$');
  if (tally.fields === 0 && tally.enumFields) tally.fields = 1;
  return tally.summary(kind);
}

function compactValue(value, level, nest, tally, path) {
  checkNesting(nest, path);
  if (typeof value === 'string') {
    if (value.includes('|')) {
      const options = value.split('|').map(pyStrip);
      if (!options.every((o) => o.length)) throw fail(`the compact value at ${path} has an empty alternative`);
      if (!options.every((o) => TYPE_NAMES.has(o.toLowerCase()))) {
        tally.enumFields += 1;
        tally.enumValues += options.length;
      }
    }
  } else if (isMap(value)) {
    if (isJsonSchema(value)) walk(value, level, nest, tally, path);
    else compactObject(value, level + 1, nest, tally, path, false);
  } else if (Array.isArray(value)) {
    if (value.length === 1) compactValue(value[0], level, nest + 1, tally, `${path}[0]`);
    else if (value.length >= 2 && value.every(isScalar)) { tally.enumFields += 1; tally.enumValues += value.length; }
    else throw fail(`the compact list at ${path} must be [element] or a list of allowed values`);
  } else {
    throw fail(`the compact value at ${path} must be a type name string, an object or a list`);
  }
}

function compactObject(obj, level, nest, tally, path, top) {
  checkNesting(nest, path);
  if (Object.keys(obj).length) tally.depth = Math.max(tally.depth, level);
  for (const [name, value] of Object.entries(obj)) {
    tally.fields += 1;
    tally.required += top ? 1 : 0;
    compactValue(value, level, nest + 1, tally, `${path}.${name}`);
  }
}

function tools(list) {
  const tally = new Tally();
  list.forEach((tool, i) => {
    if (!isMap(tool)) throw fail(`tools[${i}] must be an object`);
    const fn = tool.type === 'function' && has(tool, 'function') ? tool.function : tool;
    if (!isMap(fn) || typeof fn.name !== 'string' || !pyStrip(fn.name)) throw fail(`tools[${i}] has no 'name' (a non-empty string)`);
    const params = has(fn, 'parameters') ? fn.parameters : (has(fn, 'input_schema') ? fn.input_schema : null);
    if (params === null || params === undefined) return;
    if (!isMap(params)) throw fail(`tools[${i}] (${fn.name}) 'parameters' must be a JSON Schema object`);
    const sub = new Tally();
    walk(params, 0, 1, sub, `$.tools[${i}].parameters`);
    tally.fields += sub.fields;
    tally.required += sub.required;
    tally.enumFields += sub.enumFields;
    tally.enumValues += sub.enumValues;
    tally.depth = Math.max(tally.depth, sub.depth);
  });
  return tally.summary('tools', list.length);
}

function responseFormat(d) {
  if (d.type === 'json_object') return new Tally().summary('response_format');
  if (!has(d, 'json_schema') && !has(d, 'schema')) throw fail("a response_format of type 'json_schema' needs a 'json_schema' object");
  const inner = has(d, 'json_schema') ? d.json_schema : d;
  if (!isMap(inner)) throw fail("response_format 'json_schema' must be an object");
  const schema = has(inner, 'schema') ? inner.schema : null;
  if (schema === null) return new Tally().summary('response_format');
  if (!isMap(schema)) throw fail("response_format 'schema' must be a JSON Schema object");
  return jsonSchema(schema, 'response_format');
}

// Python's str.strip(): Unicode whitespace per str.isspace()
const PY_WS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'g');
function pyStrip(s) { return s.replace(STRIP, ''); }

/** Summarise an output schema of any accepted form; FeatureError when it is malformed. */
function summarizeSchema(schema) {
  if (typeof schema === 'string') {
    const text = pyStrip(schema);
    if (!text) return NO_SCHEMA;
    try { schema = JSON.parse(text); } catch (exc) { throw fail(`the string is not valid JSON (${exc.message})`); }
    if (typeof schema === 'string') throw fail('the string decodes to another string');
  }
  if (schema === null || schema === undefined) return NO_SCHEMA;
  if (Array.isArray(schema)) {
    if (!schema.length) throw fail('the list is empty');
    if (schema.every(isMap)) return tools(schema);
    if (schema.every(isScalar)) return summary(true, 'enum', 1, 1, 1, schema.length, 1, 0);
    throw fail('a list must hold only tool objects or only strings/numbers/booleans (an enum list)');
  }
  if (!isMap(schema)) throw fail('expected a JSON Schema, response_format, tools list, enum list, compact {field: type} object or a JSON string of one');
  const keys = Object.keys(schema);
  if (!keys.length) throw fail('the object is empty');
  const lists = ['tools', 'functions'].filter((k) => has(schema, k)).map((k) => schema[k]);
  if (lists.length && keys.every((k) => TOOLS_KEYS.has(k)) && lists.every(Array.isArray)) {
    const all = lists.flat();
    if (!all.length) throw fail('the tools list is empty');
    return tools(all);
  }
  if (schema.type === 'function' && has(schema, 'function')) return tools([schema]);
  if (schema.type === 'text' && keys.length === 1) return NO_SCHEMA;
  if (schema.type === 'json_schema' || schema.type === 'json_object') return responseFormat(schema);
  if (isJsonSchema(schema)) return jsonSchema(schema, 'json_schema');
  const tally = new Tally();
  compactObject(schema, 1, 1, tally, '$', true);
  return tally.summary('compact');
}

module.exports = { SCHEMA_KINDS, NO_SCHEMA, summarizeSchema, schemaVector, pyStrip, PY_WS };
