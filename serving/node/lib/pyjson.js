'use strict';
// JSON read with its numbers' text kept, and written as Python's json.dumps(sort_keys=True) writes
// it: the manifest digest (models/bundle_format.py manifest_digest) is a sha256 of that text, and
// JSON.parse alone would lose the difference between 1 and 1.0.

class RawNumber {
  constructor(text) { this.text = text; this.value = Number(text); }
}

function parseRaw(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i += 1; };
  const fail = (what) => { throw new SyntaxError(`${what} at char ${i}`); };
  function value(depth) {
    if (depth > 64) fail('nested more than 64 deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i += 1; const out = {}; ws();
      if (text[i] === '}') { i += 1; return out; }
      for (;;) {
        ws(); if (text[i] !== '"') fail('expected a key');
        const key = string(); ws(); if (text[i] !== ':') fail("expected ':'"); i += 1;
        out[key] = value(depth + 1); ws();
        if (text[i] === ',') { i += 1; continue; }
        if (text[i] === '}') { i += 1; return out; }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i += 1; const out = []; ws();
      if (text[i] === ']') { i += 1; return out; }
      for (;;) {
        out.push(value(depth + 1)); ws();
        if (text[i] === ',') { i += 1; continue; }
        if (text[i] === ']') { i += 1; return out; }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m && m[0].length) { i += m[0].length; return new RawNumber(m[0]); }
    for (const word of ['NaN', 'Infinity', '-Infinity']) {
      if (text.startsWith(word, i)) { i += word.length; return new RawNumber(word); }
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    return fail('unexpected token');
  }
  function string() {
    const m = /^"(?:[^"\\\u0000-\u001f]|\\.)*"/.exec(text.slice(i));
    if (!m) fail('bad string');
    i += m[0].length;
    return JSON.parse(m[0]);
  }
  const out = value(0);
  ws();
  if (i !== text.length) fail('extra data');
  return out;
}

/** Plain JS values (numbers as numbers) from a parseRaw tree. */
function plain(v) {
  if (v instanceof RawNumber) return v.value;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') { const o = {}; for (const k of Object.keys(v)) o[k] = plain(v[k]); return o; }
  return v;
}

function pyString(s) {
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    const ch = s[k];
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (c < 0x20 || c > 0x7e) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

/** Python json.dumps(value, sort_keys=True) of a parseRaw tree (the numbers' text as it was written). */
function pyDumps(v) {
  if (v instanceof RawNumber) return v.text;
  if (v === null) return 'null';
  if (v === true) return 'true';
  if (v === false) return 'false';
  if (typeof v === 'string') return pyString(v);
  if (Array.isArray(v)) return `[${v.map(pyDumps).join(', ')}]`;
  const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${keys.map((k) => `${pyString(k)}: ${pyDumps(v[k])}`).join(', ')}}`;
}

module.exports = { parseRaw, plain, pyDumps, RawNumber };
