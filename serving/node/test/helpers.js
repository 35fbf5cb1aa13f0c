'use strict';
// Where the bundles made by tests/serving/test_node_runtime.py are: $TIERROUTE_NODE_BUNDLES
// holds pooled/ (static encoder), per_candidate/ (no encoder), share/ (the share policy), lowrank/ and knn/ (numpy-served) and tree.json (the Python tree's
// decisions without a bundle). Without it, the bundle tests skip.

const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = process.env.TIERROUTE_NODE_BUNDLES || null;
const SKIP = ROOT === null ? 'set TIERROUTE_NODE_BUNDLES (python -m pytest tests/serving/test_node_runtime.py does)' : false;

// Scratch folders go under $TIERROUTE_NODE_SCRATCH (the Python test's tmp_path) when set, else
// the system's temporary folder; either way each is removed when the test process exits.
const SCRATCH = process.env.TIERROUTE_NODE_SCRATCH || os.tmpdir();
const made = [];
process.on('exit', () => { for (const dir of made) fs.rmSync(dir, { recursive: true, force: true }); });

/** A new empty folder of this test run's own (removed at exit). */
function scratchDir(prefix = 'tierroute-node-') {
  fs.mkdirSync(SCRATCH, { recursive: true });
  const dir = fs.mkdtempSync(path.join(SCRATCH, prefix));
  made.push(dir);
  return dir;
}

/** A private copy of one of the bundles, to damage. */
function copyBundle(name) {
  const dir = scratchDir(`tierroute-node-${name}-`);
  fs.cpSync(path.join(ROOT, name), dir, { recursive: true });
  return dir;
}

function manifestOf(dir) { return JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')); }

function writeManifest(dir, manifest) { fs.writeFileSync(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`); }

module.exports = { ROOT, SKIP, copyBundle, scratchDir, manifestOf, writeManifest };
