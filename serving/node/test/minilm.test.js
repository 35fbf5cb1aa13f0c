'use strict';
// A MiniLM-ONNX bundle ($TIERROUTE_NODE_BUNDLES/minilm, made by tests/serving/test_node_runtime.py):
// the WordPiece port and the graph pass the conformance vectors.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { Router, checkConformance } = require('../lib');
const { ROOT } = require('./helpers');

const DIR = ROOT === null ? null : path.join(ROOT, 'minilm');
const SKIP = DIR === null || !fs.existsSync(DIR) ? 'no MiniLM bundle (tests/serving/test_node_runtime.py makes one)' : false;

test("the MiniLM bundle's conformance vectors pass", { skip: SKIP }, async () => {
  const router = await Router.load(DIR, { deadlineMs: null }, { strict: true });
  assert.match(router.bundle.encoder.id, /^minilm-onnx:all-MiniLM-L6-v2:384:/);
  const report = await checkConformance(router);
  assert.deepStrictEqual(report.mismatches.slice(0, 5), []);
  assert.ok(report.ok && report.records > 40);
});
