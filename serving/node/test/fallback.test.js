'use strict';
// Every fault falls back to the tree with its reason, as serving/router.py does
// (tests/serving/test_serving_router.py and test_bundle.py hold the Python side).

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Router, RequestError, BundleError, FALLBACK_REASONS } = require('../lib');
const { ROOT, SKIP, copyBundle, scratchDir, manifestOf, writeManifest } = require('./helpers');

const REQUEST = { prompt: 'Pull the order id.', output_schema: { order_id: 'string' } };

async function assertFallback(dir, code, config = {}, detail = null) {
  const router = await Router.load(dir, { deadlineMs: null, ...config });
  assert.strictEqual(router.learned, false);
  assert.strictEqual(router.unavailable.code, code, router.unavailable.message);
  if (detail) assert.match(router.unavailable.message, detail);
  const decision = await router.route(REQUEST);
  assert.ok(FALLBACK_REASONS.includes(code));
  assert.strictEqual(decision.source, 'heuristic');
  assert.strictEqual(decision.fallback, code);
  assert.ok(decision.reason.startsWith(`${code}; rule1: 5 tokens < 500`), decision.reason);
  assert.strictEqual(decision.tier, 'tier1');
  await assert.rejects(Router.load(dir, { deadlineMs: null, ...config }, { strict: true }), (exc) => exc instanceof BundleError && exc.code === code);
  return router;
}

test('no bundle: the tree decides', async () => {
  const router = await Router.load(null);
  const decision = await router.route(REQUEST);
  assert.deepStrictEqual([decision.tier, decision.model, decision.fallback, decision.node], ['tier1', 'claude-3-haiku', 'no_bundle', 'rule1']);
  assert.strictEqual(decision.expected_cost_usd, (5 * 0.003 + 256 * 0.012) / 1000.0);
  await assertFallback(path.join(os.tmpdir(), 'tierroute-no-such-bundle'), 'no_bundle');
});

test('a file, a folder without a manifest, a bad manifest, another kind: bundle_unreadable', { skip: SKIP }, async () => {
  const dir = scratchDir();
  await assertFallback(dir, 'bundle_unreadable', {}, /has no manifest.json/);
  fs.writeFileSync(path.join(dir, 'file'), 'x');
  await assertFallback(path.join(dir, 'file'), 'bundle_unreadable', {}, /not a folder/);
  const bad = copyBundle('pooled');
  fs.writeFileSync(path.join(bad, 'manifest.json'), '{"kind": ');
  await assertFallback(bad, 'bundle_unreadable', {}, /cannot be read/);
  const other = copyBundle('pooled');
  writeManifest(other, { ...manifestOf(other), kind: 'something.else' });
  await assertFallback(other, 'bundle_unreadable', {}, /expected 'tierroute.router_bundle'/);
});

test('another schema version: unknown_schema_version', { skip: SKIP }, async () => {
  const dir = copyBundle('pooled');
  writeManifest(dir, { ...manifestOf(dir), schema_version: 99 });
  await assertFallback(dir, 'unknown_schema_version', {}, /schema version 99/);
});

test('an edited manifest, a changed or missing file: checksum_mismatch', { skip: SKIP }, async () => {
  const edited = copyBundle('pooled');
  const manifest = manifestOf(edited);
  manifest.policy.value += 0.01;
  writeManifest(edited, manifest);
  await assertFallback(edited, 'checksum_mismatch', {}, /changed after export/);
  const changed = copyBundle('pooled');
  fs.appendFileSync(path.join(changed, 'model.onnx'), 'x');
  await assertFallback(changed, 'checksum_mismatch', {}, /'model.onnx' in bundle .* has sha256/);
  const missing = copyBundle('per_candidate');
  fs.unlinkSync(path.join(missing, 'model-0.onnx'));
  await assertFallback(missing, 'checksum_mismatch', {}, /lists 'model-0.onnx' but it is missing/);
});

test('a corrupt ONNX model (checksums off): onnx_error', { skip: SKIP }, async () => {
  const dir = copyBundle('pooled');
  fs.writeFileSync(path.join(dir, 'model.onnx'), 'not onnx');
  await assertFallback(dir, 'onnx_error', { verifyChecksums: false }, /onnxruntime cannot load 'model.onnx'/);
});

test('signals the model was not trained with: feature_spec_mismatch', { skip: SKIP }, async () => {
  const dir = copyBundle('pooled');
  const manifest = manifestOf(dir);
  manifest.signals.keyword_cap = 3;
  writeManifest(dir, manifest);
  await assertFallback(dir, 'feature_spec_mismatch', { verifyChecksums: false }, /Feature spec mismatch on 'signals'/);
});

test('an unknown encoder or model kind, a MiniLM encoder without its files, damaged low-rank arrays: said clearly, and the tree decides', { skip: SKIP }, async () => {
  const unknown = copyBundle('pooled');
  const manifest = manifestOf(unknown);
  manifest.encoder = { ...manifest.encoder, kind: 'bert_custom' };
  writeManifest(unknown, manifest);
  await assertFallback(unknown, 'feature_spec_mismatch', { verifyChecksums: false }, /has kind "bert_custom"; this runtime serves 'static' and 'minilm_onnx'/);
  const minilm = copyBundle('pooled');
  writeManifest(minilm, { ...manifest, encoder: { ...manifest.encoder, kind: 'minilm_onnx' } });
  await assertFallback(minilm, 'feature_spec_mismatch', { verifyChecksums: false }, /minilm_onnx encoder lists files .*; expected \["minilm.json"/);
  const other = copyBundle('per_candidate');
  const m2 = manifestOf(other);
  m2.model.kind = 'forest';
  writeManifest(other, m2);
  await assertFallback(other, 'bundle_invalid', { verifyChecksums: false }, /holds a "forest" model; the Node runtime serves the model kinds/);
  const lowrank = copyBundle('lowrank');
  fs.writeFileSync(path.join(lowrank, manifestOf(lowrank).model.files[0]), 'not an array');
  await assertFallback(lowrank, 'checksum_mismatch', {}, /has sha256/);
  await assertFallback(lowrank, 'bundle_invalid', { verifyChecksums: false }, /The lowrank model of bundle .* cannot be opened/);
});

test('damaged calibration or candidates that do not fit: bundle_invalid', { skip: SKIP }, async () => {
  const dir = copyBundle('pooled');
  const manifest = manifestOf(dir);
  manifest.calibration[0] = { method: 'isotonic', x: [0, 1], y: [0] };
  writeManifest(dir, manifest);
  await assertFallback(dir, 'bundle_invalid', { verifyChecksums: false }, /isotonic knots must be two equal-length finite lists/);
  const fewer = copyBundle('pooled');
  const m2 = manifestOf(fewer);
  m2.calibration.pop();
  writeManifest(fewer, m2);
  await assertFallback(fewer, 'bundle_invalid', { verifyChecksums: false }, /does not fit together/);
});

test('per-request faults: prompt_too_large, deadline_exceeded, low_confidence', { skip: SKIP }, async () => {
  const dir = path.join(ROOT, 'pooled');
  const cases = [[{ maxPromptChars: 3 }, 'prompt_too_large'], [{ deadlineMs: 0 }, 'deadline_exceeded'], [{ minConfidence: 1.0 }, 'low_confidence']];
  for (const [config, code] of cases) {
    const router = await Router.load(dir, { deadlineMs: null, ...config }, { strict: true });
    const decision = await router.route(REQUEST);
    assert.strictEqual(decision.fallback, code, decision.reason);
    assert.ok(decision.reason.startsWith(`${code} (`), decision.reason);
    assert.strictEqual(decision.bundle_id, router.bundleId);
  }
  const router = await Router.load(dir, { deadlineMs: null }, { strict: true });
  const decision = await router.route(REQUEST);
  assert.strictEqual(decision.source, 'learned');
  assert.strictEqual(decision.fallback, null);
});

test('malformed requests throw RequestError saying what arrived, as Python raises', { skip: SKIP }, async () => {
  const router = await Router.load(path.join(ROOT, 'pooled'), { deadlineMs: null });
  const bad = [[42, /A request must be an object/], [{ prompt: 7 }, /'prompt' must be a string; got 7 \(number\)/],
    [{ prompt: 'x', colour: 'blue' }, /Unknown request field\(s\) \["colour"\]/], [{ messages: [] }, /'messages' must be a non-empty list/],
    [{ prompt: 'x', latency_sla_ms: -1 }, /'latency_sla_ms' must be >= 0/], [{ prompt: 'x', output_schema: [] }, /Malformed output_schema: the list is empty/],
    [{ prompt: 'x', objective: 'cheapest' }, /must be one of .* Got "cheapest" instead/]];
  for (const [request, message] of bad) await assert.rejects(router.route(request), (exc) => exc instanceof RequestError && message.test(exc.message));
  const plain = await Router.load(path.join(ROOT, 'per_candidate'), { deadlineMs: null });
  if (plain.bundle.core.curve === null) await assert.rejects(plain.route({ ...REQUEST, objective: 'max-accuracy' }), RequestError);
});

test('a batch decides as route() one by one', { skip: SKIP }, async () => {
  const router = await Router.load(path.join(ROOT, 'pooled'), { deadlineMs: null }, { strict: true });
  const requests = [REQUEST, { prompt: 'Step by step, analyze and compare.', latency_sla_ms: 150 }, { prompt: '' }];
  const batch = await router.routeBatch(requests);
  for (const [i, request] of requests.entries()) {
    const { elapsed_ms: _a, request_id: idA, ...one } = await router.route(request);
    const { elapsed_ms: _b, request_id: idB, ...fromBatch } = batch[i];
    assert.match(`${idA} ${idB}`, /^[0-9a-f]{32} [0-9a-f]{32}$/); // no id given: generated, one per decision
    assert.deepStrictEqual(fromBatch, one);
  }
});
