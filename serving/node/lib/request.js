'use strict';
// The routing request: a port of tierroute/request.py (parse_request, messages_to_prompt).

const { RequestError, FeatureError } = require('./errors');
const { summarizeSchema, pyStrip } = require('./schema');

const DEFAULT_MAX_PROMPT_CHARS = 4000000;
const MAX_SCHEMA_DEPTH = 128;
const MAX_LATENCY_SLA_MS = 1e12;
const REQUEST_FIELDS = new Set(['prompt', 'messages', 'output_schema', 'latency_sla_ms', 'id', 'task', 'metadata', 'objective']);

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function describe(value) {
  let text;
  try { text = JSON.stringify(value); } catch (_) { text = String(value); }
  if (text === undefined) text = String(value);
  if (text.length > 80) text = `${text.slice(0, 77)}...`;
  const kind = value === null ? 'null' : Array.isArray(value) ? 'list' : typeof value;
  return `${text} (${kind})`;
}

/** Code points of a string (Python's len). */
function codePoints(text) {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { n -= 1; i += 1; }
    }
  }
  return n;
}

const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function findSurrogate(value, path = '$', depth = 0) {
  if (depth > 256) return null;
  if (typeof value === 'string') return LONE.test(value) ? path : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) { const w = findSurrogate(value[i], `${path}[${i}]`, depth + 1); if (w) return w; }
  } else if (isMap(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (LONE.test(k)) return path;
      const w = findSurrogate(v, `${path}.${k}`, depth + 1);
      if (w) return w;
    }
  }
  return null;
}

function jsonDepth(value, limit) {
  // the deepest nesting of arrays/objects, stopping past limit
  const stack = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop();
    if (v !== null && typeof v === 'object') {
      if (d > limit) return d;
      for (const child of Object.values(v)) stack.push([child, d + 1]);
    }
  }
  return 0;
}

/** Flatten OpenAI-style chat messages into one prompt text (``role: content`` lines). */
function messagesToPrompt(messages) {
  if (!Array.isArray(messages) || !messages.length) {
    throw new RequestError(`'messages' must be a non-empty list of {'role', 'content'} objects; got ${describe(messages)}. `
      + 'Send a list like [{"role": "user", "content": "..."}].');
  }
  return messages.map((message, i) => {
    if (!isMap(message) || !Object.prototype.hasOwnProperty.call(message, 'content')) {
      throw new RequestError(`messages[${i}] must be an object with 'role' and 'content'; got ${describe(message)}. `
        + "Fix that message or send 'prompt' instead.");
    }
    let content = message.content;
    if (Array.isArray(content)) {
      content = content.filter((p) => isMap(p) && p.type === 'text')
        .map((p) => (Object.prototype.hasOwnProperty.call(p, 'text') ? pyStr(p.text) : '')).join('\n');
    }
    if (content === null || content === undefined) content = '';
    if (typeof content !== 'string') {
      throw new RequestError(`messages[${i}].content must be a string or a list of text parts; got ${describe(content)}.`);
    }
    const role = Object.prototype.hasOwnProperty.call(message, 'role') ? pyStr(message.role) : 'user';
    return `${role}: ${content}`;
  }).join('\n');
}

/** Python's str() of a JSON value (for the rare non-string role or text). */
function pyStr(value) {
  if (typeof value === 'string') return value;
  if (value === null) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  return String(value);
}

function checkSla(value) {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new RequestError(`'latency_sla_ms' must be a finite number of milliseconds or null; got ${describe(value)}. `
      + 'Send e.g. 150, or leave it out when there is no latency budget.');
  }
  if (value < 0) throw new RequestError(`'latency_sla_ms' must be >= 0; got ${value}. Send the p95 latency budget in milliseconds.`);
  if (value > MAX_LATENCY_SLA_MS) {
    throw new RequestError(`'latency_sla_ms' must be at most 1e+12 ms (about 31 years); got ${describe(value)}. `
      + 'Send the p95 latency budget in milliseconds, or leave it out when there is none.');
  }
  return value;
}

function checkSchema(schema) {
  if (typeof schema === 'string') {
    const text = pyStrip(schema);
    if (!text) return [null, null];
    try { schema = JSON.parse(text); } catch (exc) {
      throw new RequestError(`'output_schema' is a string that is not JSON (${exc.message}): ${describe(schema)}. `
        + 'Send the schema as a JSON object or list.');
    }
  }
  if (jsonDepth(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH) {
    throw new RequestError(`'output_schema' nests deeper than ${MAX_SCHEMA_DEPTH} levels; send a flatter schema.`);
  }
  let summary;
  try { summary = summarizeSchema(schema); } catch (exc) {
    if (exc instanceof FeatureError) throw new RequestError(`${exc.message} (in 'output_schema')`);
    throw exc;
  }
  return summary.present ? [schema, summary] : [null, null];
}

/**
 * A checked request {prompt, output_schema, latency_sla_ms, schema_summary} from a plain object;
 * RequestError saying what arrived and what is expected.
 */
function parseRequest(data, maxPromptChars = DEFAULT_MAX_PROMPT_CHARS) {
  if (!isMap(data)) {
    throw new RequestError(`A request must be an object with 'prompt' (or 'messages'); got ${describe(data)}. `
      + 'Send {"prompt": "...", "output_schema": null, "latency_sla_ms": null}.');
  }
  const unknown = Object.keys(data).filter((k) => !REQUEST_FIELDS.has(k)).sort();
  if (unknown.length) {
    throw new RequestError(`Unknown request field(s) ${JSON.stringify(unknown)}; expected prompt or messages, output_schema, `
      + 'latency_sla_ms (and optional id, task, metadata, objective). Check the spelling.');
  }
  if (Object.prototype.hasOwnProperty.call(data, 'id')) {
    const where = findSurrogate(data.id);
    if (where !== null) {
      throw new RequestError(`'id' holds a lone surrogate (half of a UTF-16 pair) at ${where.replace('$', 'id')}, which cannot be `
        + 'sent back as UTF-8 text; expected a string of whole characters, a number or null. Send the id as valid Unicode (ASCII is safest).');
    }
  }
  let prompt;
  if (data.prompt !== undefined && data.prompt !== null) {
    prompt = data.prompt;
    if (typeof prompt !== 'string') throw new RequestError(`'prompt' must be a string; got ${describe(prompt)}. Send the prompt text.`);
  } else if (data.messages !== undefined && data.messages !== null) {
    prompt = messagesToPrompt(data.messages);
  } else {
    throw new RequestError("The request has no 'prompt' (and no 'messages'). Send the text you would send to the model.");
  }
  const chars = codePoints(prompt);
  if (chars > maxPromptChars) {
    throw new RequestError(`The prompt has ${chars} characters; at most ${maxPromptChars} are accepted. `
      + 'Send a shorter prompt or raise maxPromptChars.');
  }
  const [schema, summary] = checkSchema(data.output_schema === undefined ? null : data.output_schema);
  return { prompt, output_schema: schema, latency_sla_ms: checkSla(data.latency_sla_ms), schema_summary: summary, chars };
}

module.exports = { parseRequest, messagesToPrompt, codePoints, DEFAULT_MAX_PROMPT_CHARS, describe };
