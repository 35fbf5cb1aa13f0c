'use strict';
// Check this runtime against a bundle's conformance.jsonl (written by tierroute's
// serving/conformance.py): tokens, signals, SLA feasibility and decisions exactly; features, raw
// scores, probabilities and expected costs within the file's tolerance (1e-5).

const fs = require('fs');
const path = require('path');
const { parseRequest } = require('./request');
const { RequestError } = require('./errors');

const KIND = 'tierroute.conformance';
const EXACT_DECISION = ['schema_version', 'tier', 'model', 'source', 'reason', 'node', 'signals', 'fallback', 'bundle_id',
  'propensity', 'explored', 'objective'];

function same(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a === b || (Number.isNaN(a) && Number.isNaN(b));
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => same(v, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return same(ka, kb) && ka.every((k) => same(a[k], b[k]));
  }
  return a === b;
}

function close(a, b, tol) {
  const nullish = (v) => v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v));
  if (nullish(a) || nullish(b)) return nullish(a) && nullish(b);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => close(v, b[i], tol));
  if (typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a);
    return same(ka, Object.keys(b)) && ka.every((k) => close(a[k], b[k], tol));
  }
  return Math.abs(Number(a) - Number(b)) <= tol;
}

/** The conformance file's (header, records). */
function readConformance(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  const parsed = lines.map((l) => JSON.parse(l));
  if (!parsed.length || parsed[0].kind !== KIND) throw new Error(`${file} does not start with a '${KIND}' header line; pass a conformance.jsonl written by tierroute.`);
  if (parsed[0].schema_version !== 1) throw new Error(`${file} has conformance schema version ${parsed[0].schema_version}; this runtime checks version 1.`);
  return [parsed[0], parsed.slice(1)];
}

/** This runtime's record for one request (the same fields as the file's). */
async function recordFor(router, item, i) {
  let decision;
  try {
    decision = await router.route(item);
  } catch (exc) {
    if (exc instanceof RequestError) return { i, error: exc.message };
    throw exc;
  }
  const steps = await router.steps(parseRequest(item));
  const { elapsed_ms: _, ...rest } = decision;
  return { i, tokens: steps.tokens, signals: steps.signals, features: steps.features, raw: steps.raw,
    probabilities: steps.probabilities, expected_cost: steps.expected_cost, feasible: steps.feasible, decision: rest };
}

function compare(want, got, tol) {
  const out = [];
  const miss = (field, expected, actual) => out.push({ i: want.i, field, expected, got: actual });
  if ('error' in want || 'error' in got) {
    if (('error' in want) !== ('error' in got)) miss('error', want.error ?? null, got.error ?? got.decision);
    return out;
  }
  for (const f of ['tokens', 'signals', 'feasible']) if (!same(want[f] ?? null, got[f] ?? null)) miss(f, want[f], got[f]);
  for (const f of ['features', 'raw', 'probabilities', 'expected_cost']) if (!close(want[f], got[f], tol)) miss(f, want[f], got[f]);
  const wd = want.decision || {};
  const gd = got.decision || {};
  for (const f of EXACT_DECISION) if (!same(wd[f] ?? null, gd[f] ?? null)) miss(`decision.${f}`, wd[f], gd[f]);
  for (const f of ['probabilities', 'expected_cost_usd']) if (!close(wd[f], gd[f], tol)) miss(`decision.${f}`, wd[f], gd[f]);
  return out;
}

/**
 * Run ``router`` (loaded with deadlineMs: null) on every request of ``file`` (default
 * BUNDLE/conformance.jsonl) -> {records, mismatches, ok}.
 */
async function checkConformance(router, file = null) {
  const target = file || path.join(router.bundle.path, 'conformance.jsonl');
  const [header, records] = readConformance(target);
  const mismatches = [];
  if (header.bundle_id !== router.bundleId) {
    mismatches.push({ i: null, field: 'bundle_id', expected: header.bundle_id, got: router.bundleId });
  }
  const tol = typeof header.tolerance === 'number' ? header.tolerance : 1e-5;
  for (const want of records) mismatches.push(...compare(want, await recordFor(router, want.request, want.i), tol));
  return { file: target, records: records.length, mismatches, ok: records.length > 0 && !mismatches.length };
}

module.exports = { checkConformance, readConformance, recordFor, compare };
