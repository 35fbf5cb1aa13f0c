'use strict';
// Read and verify a RouterBundle as serving/bundle.py does: kind, schema version, the manifest's
// digest, every listed file's sha256, the FeatureSpec rebuilt from the manifest's signal config,
// the encoder and the ONNX models. Any failure is a BundleError whose code is the fallback reason.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { BundleError, TierrouteError } = require('./errors');
const { parseRaw, plain, pyDumps } = require('./pyjson');
const { SignalExtractor } = require('./signals');
const { Catalogue } = require('./catalogue');
const { calibration, KnobCurve, DecisionCore } = require('./decision');
const { readNpy } = require('./encoder');
const { StaticEncoder } = require('./encoder');
const { openScorer } = require('./scorers');
const { MiniLMEncoder } = require('./minilm');

const BUNDLE_KIND = 'tierroute.router_bundle';
const BUNDLE_SCHEMA_VERSION = 1;
// models/bundle_format.py BUNDLE_SCHEMA_VERSIONS: 2, the fixed policy may be the knob curve's anchor
const BUNDLE_SCHEMA_VERSIONS = [1, 2];
const FEATURE_VERSION = 1;
const PROVENANCE = ['created', 'versions', 'metrics', 'training', 'reference', 'bundle_id'];
const SERVED_KINDS = ['pooled', 'per_candidate', 'lowrank', 'knn'];

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');
const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function readManifest(dir) {
  let stat = null;
  try { stat = fs.statSync(dir); } catch (_) { /* absent */ }
  if (stat === null || !stat.isDirectory()) {
    throw new BundleError(stat === null ? 'no_bundle' : 'bundle_unreadable', `No router bundle at '${dir}' `
      + `(${stat === null ? 'nothing there' : 'not a folder'}). Pass the folder \`tierroute export\` wrote.`);
  }
  let raw;
  try {
    raw = parseRaw(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  } catch (exc) {
    const missing = exc && exc.code === 'ENOENT';
    throw new BundleError('bundle_unreadable', missing ? `'${dir}' has no manifest.json, so it is not a router bundle. Pass the folder \`tierroute export\` wrote.`
      : `The manifest.json of '${dir}' cannot be read (${exc.message}). The bundle is damaged: re-export it.`);
  }
  const manifest = plain(raw);
  if (!isMap(manifest) || manifest.kind !== BUNDLE_KIND) {
    throw new BundleError('bundle_unreadable', `'${dir}'/manifest.json has kind ${JSON.stringify(isMap(manifest) ? manifest.kind : manifest)}; `
      + `expected '${BUNDLE_KIND}'. Pass the folder \`tierroute export\` wrote.`);
  }
  if (!BUNDLE_SCHEMA_VERSIONS.includes(manifest.schema_version)) {
    throw new BundleError('unknown_schema_version', `Bundle '${dir}' has schema version ${JSON.stringify(manifest.schema_version)}; this `
      + `runtime serves versions ${BUNDLE_SCHEMA_VERSIONS.join(' and ')}. Re-export it with this tierroute, or upgrade the runtime.`);
  }
  return [manifest, raw];
}

function verifyFiles(dir, manifest, raw) {
  const content = {};
  for (const key of Object.keys(raw)) if (!PROVENANCE.includes(key)) content[key] = raw[key];
  const digest = sha256(pyDumps(content)).slice(0, 16);
  if (manifest.bundle_id !== digest) {
    throw new BundleError('checksum_mismatch', `The manifest.json of bundle '${dir}' changed after export: its content digest is `
      + `${digest}, its bundle_id says ${JSON.stringify(manifest.bundle_id)}. Re-export the bundle rather than editing it.`);
  }
  const files = isMap(manifest.files) ? manifest.files : null;
  if (files === null) throw new BundleError('bundle_invalid', `The manifest of bundle '${dir}' has no 'files' object. Re-export it.`);
  for (const name of Object.keys(files).sort()) {
    const target = path.join(dir, name);
    if (path.basename(name) !== name || !fs.existsSync(target) || !fs.statSync(target).isFile()) {
      throw new BundleError('checksum_mismatch', `Bundle '${dir}' lists '${name}' but it is missing. Copy the whole bundle folder, or re-export it.`);
    }
    const actual = sha256(fs.readFileSync(target));
    if (actual !== files[name]) {
      throw new BundleError('checksum_mismatch', `'${name}' in bundle '${dir}' has sha256 ${actual.slice(0, 12)}..., the manifest expects `
        + `${String(files[name]).slice(0, 12)}...: the file changed after export. Re-export the bundle.`);
    }
  }
}

function need(manifest, key, check, dir) {
  const value = manifest[key];
  if (!check(value)) {
    throw new BundleError('bundle_invalid', `The manifest of bundle '${dir}' has '${key}' = ${JSON.stringify(value)}; expected it from `
      + '`tierroute export`. The bundle is damaged or from another tool: re-export it.');
  }
  return value;
}

function openEncoder(dir, info) {
  if (info === null || info === undefined) return null;
  const expected = { static: ['static.json', 'static_ids.npy', 'static_table.npy'], minilm_onnx: ['minilm.json', 'minilm.onnx', 'minilm_tokenizer.json'] }[info.kind];
  if (expected === undefined) {
    throw new BundleError('feature_spec_mismatch', `The bundle's encoder has kind ${JSON.stringify(info.kind)}; this runtime serves 'static' `
      + "and 'minilm_onnx'. Upgrade the runtime or re-export the bundle.");
  }
  if (!Array.isArray(info.files) || JSON.stringify([...info.files].sort()) !== JSON.stringify(expected)) {
    throw new BundleError('feature_spec_mismatch', `The bundle's ${info.kind} encoder lists files ${JSON.stringify(info.files)}; expected ${JSON.stringify(expected)}. Re-export the bundle.`);
  }
  return info.kind === 'static' ? StaticEncoder.load(dir) : new MiniLMEncoder(dir);
}

function checkSpec(dir, manifest, extractor, encoder) {
  const spec = need(manifest, 'feature_spec', isMap, dir);
  const names = [...extractor.featureNames, ...Array.from({ length: encoder ? encoder.dims : 0 }, (_, i) => `emb_${i}`)];
  const built = { version: FEATURE_VERSION, tokenizer: extractor.tokenizerId, embedding: encoder ? encoder.id : null,
    embedding_dims: encoder ? encoder.dims : 0, signals: manifest.signals };
  for (const key of ['version', 'tokenizer', 'embedding', 'embedding_dims', 'signals']) {
    const want = key === 'embedding_dims' ? (spec[key] || 0) : spec[key];
    if (JSON.stringify(want) !== JSON.stringify(built[key])) {
      throw new BundleError('feature_spec_mismatch', `Bundle '${dir}' cannot be served: Feature spec mismatch on '${key}': the model was `
        + `trained with ${JSON.stringify(want)}, this runtime builds ${JSON.stringify(built[key])}. Retrain, or serve with the Python runtime.`);
    }
  }
  if (JSON.stringify(spec.names) !== JSON.stringify(names)) {
    throw new BundleError('feature_spec_mismatch', `Bundle '${dir}' cannot be served: Feature spec mismatch on 'names'. Retrain, or serve `
      + 'with the configuration the model was trained with.');
  }
  return names;
}

/** The parts of a verified manifest as runtime objects (before the ONNX sessions open). */
function readParts(dir, manifest) {
  try {
    const extractor = new SignalExtractor(need(manifest, 'signals', isMap, dir));
    const encoder = openEncoder(dir, manifest.encoder);
    const names = checkSpec(dir, manifest, extractor, encoder);
    const model = need(manifest, 'model', isMap, dir);
    const candidates = need(manifest, 'candidates', Array.isArray, dir);
    const catalogue = new Catalogue(need(manifest, 'catalogue', isMap, dir));
    const policyRaw = need(manifest, 'policy', isMap, dir);
    if (!['threshold', 'lambda', 'share'].includes(policyRaw.kind) || typeof policyRaw.value !== 'number') {
      throw new BundleError('bundle_invalid', `Bundle '${dir}' has policy ${JSON.stringify(policyRaw)}; expected kind threshold, lambda or share with a numeric value. Re-export it.`);
    }
    const policy = { kind: policyRaw.kind, value: policyRaw.value, frontier: policyRaw.frontier === undefined ? null : policyRaw.frontier };
    const cost = need(manifest, 'cost_model', isMap, dir);
    const calibrations = need(manifest, 'calibration', Array.isArray, dir).map((c, j) => calibration(c, `bundle ${dir} calibration[${j}]`));
    const objective = manifest.objective;
    const curve = objective === undefined || objective === null ? null
      : new KnobCurve(isMap(objective) && objective.curve !== undefined ? objective.curve : objective, `knob curve of bundle ${dir}`);
    return { extractor, encoder, names, model, candidates, catalogue, policy, cost, calibrations, curve };
  } catch (exc) {
    if (exc instanceof BundleError) throw exc;
    if (exc instanceof TierrouteError) throw new BundleError(exc.name === 'FeatureError' ? 'feature_spec_mismatch' : 'bundle_invalid', `Bundle '${dir}' cannot be served: ${exc.message}`);
    throw new BundleError('bundle_invalid', `Bundle '${dir}' is incomplete or damaged (${exc.name}: ${exc.message}). Re-export it.`);
  }
}

/** The candidate indices a knob curve names (its frontier, its anchor's candidate). */
function curveCandidates(curve) {
  if (curve === null) return [];
  return [curve.frontier, curve.anchor === null ? null : curve.anchor.candidate].filter((j) => j !== null);
}

function checkLayout(dir, manifest, parts) {
  const { model, candidates, calibrations, cost, policy, catalogue, curve } = parts;
  const m = candidates.length;
  const kind = model.kind;
  if (!SERVED_KINDS.includes(kind)) {
    throw new BundleError('bundle_invalid', `Bundle '${dir}' holds a ${JSON.stringify(kind)} model; the Node runtime serves the model kinds `
      + `${JSON.stringify(SERVED_KINDS)}. Serve it with the Python runtime.`);
  }
  const files = Array.isArray(model.files) ? model.files : [];
  const cand = model.candidate_features;
  const count = { pooled: 1, per_candidate: m }[kind];
  const fits = (count === undefined ? files.length > 0 : files.length === count) && Array.isArray(cand) && cand.length === m && calibrations.length === m
    && Array.isArray(cost.intercept) && cost.intercept.length === m && Array.isArray(cost.slope) && cost.slope.length === m
    && (policy.frontier === null || (policy.frontier >= 0 && policy.frontier < m)) && files.every((f) => typeof f === 'string')
    && curveCandidates(curve).every((j) => j >= 0 && j < m);
  if (!fits) {
    throw new BundleError('bundle_invalid', `Bundle '${dir}' does not fit together: ${m} candidates, model kind '${kind}' with ${files.length} `
      + `file(s), ${calibrations.length} calibrations, policy frontier ${policy.frontier}, knob curve candidates `
      + `${JSON.stringify(curveCandidates(curve))}. Re-export it.`);
  }
  const listed = manifest.files || {};
  for (const name of [...files, ...((manifest.encoder || {}).files || [])]) {
    if (typeof name !== 'string' || path.basename(name) !== name || !(name in listed) || fs.lstatSync(path.join(dir, name)).isSymbolicLink()) {
      throw new BundleError('bundle_invalid', `Bundle '${dir}' names ${JSON.stringify(name)} as a model or encoder file; expected a plain file `
        + "name inside the bundle that manifest 'files' lists with its sha256. Re-export it.");
    }
  }
  const missing = candidates.filter((c) => !catalogue.has(c));
  if (missing.length) throw new BundleError('bundle_invalid', `Bundle '${dir}': candidates ${JSON.stringify(missing)} are not in its catalogue. Re-export it.`);
}

async function openSessions(dir, parts, threads) {
  if (!['pooled', 'per_candidate'].includes(parts.model.kind)) return [];
  const ort = require('onnxruntime-node');
  const { model, names } = parts;
  const width = names.length + (model.kind === 'pooled' ? 1 + parts.model.candidate_features[0].length : 0);
  const sessions = [];
  for (const file of model.files) {
    let session;
    try {
      session = await ort.InferenceSession.create(path.join(dir, file), { intraOpNumThreads: threads, interOpNumThreads: 1,
        executionMode: 'sequential', logSeverityLevel: 3, executionProviders: ['cpu'] });
    } catch (exc) {
      throw new BundleError('onnx_error', `onnxruntime cannot load '${file}' from bundle '${dir}' (${exc.name}: ${String(exc.message).slice(0, 200)}). Re-export the bundle.`);
    }
    const meta = session.inputMetadata ? session.inputMetadata[0] : null;
    const shape = meta && meta.shape ? meta.shape : null;
    if (shape && (shape.length !== 2 || shape[1] !== width)) {
      throw new BundleError('feature_spec_mismatch', `'${file}' in bundle '${dir}' takes input shape ${JSON.stringify(shape)}; the FeatureSpec builds ${width} columns. Re-export the bundle.`);
    }
    sessions.push(session);
  }
  return sessions;
}

/** Read, verify and open a bundle folder; BundleError (with ``code``) when it cannot be served. */
async function loadBundle(dir, { threads = 1, verify = true } = {}) {
  const [manifest, raw] = readManifest(dir);
  if (verify) verifyFiles(dir, manifest, raw);
  const parts = readParts(dir, manifest);
  checkLayout(dir, manifest, parts);
  const sessions = await openSessions(dir, parts, threads);
  if (parts.encoder instanceof MiniLMEncoder) {
    try { await parts.encoder.open(threads); } catch (exc) { throw new BundleError('feature_spec_mismatch', `Bundle '${dir}' cannot be served: ${exc.message}`); }
  }
  const { candidates, catalogue, cost, names } = parts;
  const p95 = candidates.map((c) => { const v = catalogue.candidate(c).p95_latency_ms; return v === null || v === undefined ? NaN : v; });
  const tokenIndex = names.indexOf('n_tokens');
  if (tokenIndex < 0) throw new BundleError('feature_spec_mismatch', "The feature list has no 'n_tokens' column; the expected-cost model needs it. Re-export the bundle.");
  const core = new DecisionCore({ candidates, tokenIndex, calibrations: parts.calibrations, intercept: cost.intercept, slope: cost.slope,
    p95, policy: parts.policy, curve: parts.curve });
  return { path: dir, manifest, bundleId: String(manifest.bundle_id || ''), extractor: parts.extractor, encoder: parts.encoder,
    sessions, scorer: openScorer(dir, parts), kind: parts.model.kind, candidates, candidateFeatures: parts.model.candidate_features, catalogue, core, names };
}

module.exports = { loadBundle, BUNDLE_KIND, BUNDLE_SCHEMA_VERSION, readNpy };
