'use strict';
// The Node runtime passes the bundles' conformance files: tokens (js-tiktoken's o200k_base against
// bpe-openai's), signals, SLA feasibility and decisions exactly; probabilities within 1e-5.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { Router, checkConformance } = require('../lib');
const { readConformance } = require('../lib/conformance');
const { ROOT, SKIP, copyBundle } = require('./helpers');

for (const name of ['pooled', 'per_candidate', 'share', 'lowrank', 'knn', 'anchored']) {
  test(`the ${name} bundle's conformance vectors pass`, { skip: SKIP }, async () => {
    const router = await Router.load(path.join(ROOT, name), { deadlineMs: null }, { strict: true });
    const report = await checkConformance(router);
    assert.ok(report.records >= 300, `only ${report.records} records`);
    assert.deepStrictEqual(report.mismatches.slice(0, 5), []);
    assert.ok(report.ok);
  });
}

test('a corrupted vector is detected and reported', { skip: SKIP }, async () => {
  const dir = copyBundle('pooled');
  const file = path.join(dir, 'conformance.jsonl');
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const record = JSON.parse(lines[3]);
  record.tokens += 1;
  record.decision.model = 'no-such-model';
  lines[3] = JSON.stringify(record);
  fs.writeFileSync(file, lines.join('\n'));
  const router = await Router.load(dir, { deadlineMs: null }, { strict: true });
  const report = await checkConformance(router, file);
  assert.strictEqual(report.ok, false);
  assert.deepStrictEqual(report.mismatches.map((m) => [m.i, m.field]), [[record.i, 'tokens'], [record.i, 'decision.model']]);
});

test('every request of the file is covered: edge prompts, schemas, SLAs, objectives and malformed ones', { skip: SKIP }, () => {
  const [header, records] = readConformance(path.join(ROOT, 'pooled', 'conformance.jsonl'));
  assert.strictEqual(header.kind, 'tierroute.conformance');
  assert.ok(records.some((r) => r.request.prompt === ''), 'the empty prompt');
  assert.ok(records.some((r) => r.tokens > 3000), 'a prompt over 3,000 tokens');
  assert.ok(records.some((r) => r.error), 'malformed requests');
  assert.ok(records.some((r) => r.decision && r.decision.objective === 'max-accuracy'), 'named objectives');
  assert.ok(records.some((r) => r.feasible && r.feasible.includes(false)), 'an SLA some candidate misses');
});

test('the tree without a bundle decides as Python does', { skip: SKIP }, async () => {
  const expected = JSON.parse(fs.readFileSync(path.join(ROOT, 'tree.json'), 'utf8'));
  const router = await Router.load(null);
  for (const { request, decision } of expected) {
    const got = await router.route(request);
    const { elapsed_ms: _a, ...mine } = got;
    const { elapsed_ms: _b, ...theirs } = decision;
    assert.deepStrictEqual(mine, theirs, JSON.stringify(request).slice(0, 80));
  }
});
