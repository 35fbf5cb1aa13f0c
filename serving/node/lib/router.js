'use strict';
// The serving router (serving/router.py): a learned decision from a RouterBundle when it can
// answer safely, the article's heuristic tree when it cannot. A well-formed request always gets a
// decision; a malformed one throws RequestError, as in Python.

const { performance } = require('perf_hooks');
const { BundleError, ConfigError, RequestError } = require('./errors');
const { loadBundle } = require('./bundle');
const { articleCatalogue } = require('./catalogue');
const { checkObjective } = require('./decision');
const { formatFixed, formatGeneral } = require('./pyformat');
const { parseRequest, codePoints } = require('./request');
const { SignalExtractor, treeDecide } = require('./signals');

const FALLBACK_REASONS = ['no_bundle', 'bundle_unreadable', 'bundle_invalid', 'checksum_mismatch', 'feature_spec_mismatch',
  'unknown_schema_version', 'onnx_error', 'tokenizer_error', 'embedding_error', 'non_finite_output', 'prompt_too_large',
  'deadline_exceeded', 'low_confidence', 'internal_error', 'model_error'];
const DEFAULTS = { threads: 1, maxPromptChars: 200000, deadlineMs: 50.0, minConfidence: null, expectedOutputTokens: 256,
  verifyChecksums: true, objective: null };
const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

class Fallback extends Error {
  constructor(code, detail) { super(detail); this.code = code; }
}

class Router {
  constructor(bundle, config, unavailable) {
    this.config = { ...DEFAULTS, ...(config || {}) };
    if (this.config.objective !== null) checkObjective(this.config.objective, "'objective' option of the Router");
    this.bundle = bundle;
    this.catalogue = bundle ? bundle.catalogue : articleCatalogue();
    this.extractor = bundle ? bundle.extractor : new SignalExtractor();
    this.tierModels = this.catalogue.treeTierModels();
    this.unavailable = bundle ? null : (unavailable || new BundleError('no_bundle', 'No bundle was given; every decision comes from the heuristic tree.'));
    this.policy = bundle ? bundle.core.policyFor(this.config.objective) : null;
  }

  /**
   * A Router serving the bundle folder ``dir`` (null: the tree alone). A bundle that cannot be
   * served gives a Router that answers with the tree (``router.unavailable`` says why); with
   * ``strict`` it throws the BundleError instead.
   */
  static async load(dir, config = {}, { strict = false } = {}) {
    const cfg = { ...DEFAULTS, ...config };
    if (dir === null || dir === undefined) {
      if (strict) throw new BundleError('no_bundle', 'No bundle was given. Pass a bundle folder.');
      return new Router(null, cfg);
    }
    try {
      const bundle = await loadBundle(dir, { threads: cfg.threads, verify: cfg.verifyChecksums });
      return new Router(bundle, cfg);
    } catch (exc) {
      const error = exc instanceof BundleError ? exc
        : new BundleError('bundle_invalid', `Bundle '${dir}' cannot be served (${exc.name}: ${exc.message}).`);
      if (strict) throw error;
      return new Router(null, cfg, error);
    }
  }

  get learned() { return this.bundle !== null; }

  get bundleId() { return this.bundle ? this.bundle.bundleId : null; }

  /** (the policy for ``objective``, the objective's name as decisions record it). */
  policyFor(objective) {
    try {
      if (objective !== null) checkObjective(objective, "request's objective");
      let named = objective !== null ? objective : this.config.objective;
      if (this.bundle && named === null && this.bundle.core.curve) named = this.bundle.core.curve.default;
      if (objective === null || !this.bundle) return [this.policy, named];
      return [this.bundle.core.policyFor(objective), named];
    } catch (exc) {
      if (exc instanceof ConfigError || exc instanceof BundleError) throw new RequestError(exc.message);
      throw exc;
    }
  }

  /**
   * Decide for one request object ({prompt | messages, output_schema, latency_sla_ms, objective, id}).
   * The decision's ``request_id`` is the request's ``id`` (a non-empty string or an integer), else generated.
   */
  async route(item, objective = null) {
    const decided = await this.decide(item, objective);
    return { ...decided, request_id: requestIdFor(item) };
  }

  async decide(item, objective) {
    const named = objective !== null ? objective : (item && typeof item === 'object' && item.objective != null ? item.objective : null);
    if (objective !== null && item && item.objective != null && item.objective !== objective) {
      throw new RequestError(`The requests name different objectives ${JSON.stringify([item.objective, objective].sort())}; one call serves one objective.`);
    }
    const [policy, name] = this.policyFor(named);
    const start = performance.now();
    const request = parseRequest(item);
    if (!this.bundle || !policy) return this.heuristic(request, start, this.unavailable ? this.unavailable.code : 'no_bundle', null, name);
    try {
      return await this.learnedDecision(request, start, policy, name);
    } catch (exc) {
      const fb = exc instanceof Fallback ? exc : new Fallback('internal_error', `${exc.name}: ${exc.message}`);
      return this.heuristic(request, start, fb.code, fb.message, name);
    }
  }

  /** Decide for many requests (the same decisions as route() one by one). */
  async routeBatch(items, objective = null) {
    const out = [];
    for (const item of items) out.push(await this.route(item, objective));
    return out;
  }

  /** Every step of the learned path for one parsed request (what a conformance record holds). */
  async steps(request) {
    const b = this.bundle;
    if (codePoints(request.prompt) > this.config.maxPromptChars) {
      throw new Fallback('prompt_too_large', `a prompt of ${codePoints(request.prompt)} characters exceeds maxPromptChars=${this.config.maxPromptChars}`);
    }
    let ids = null;
    let sig;
    try {
      if (LONE.test(request.prompt)) throw new Error('the prompt holds a lone surrogate, which no BPE tokenizer accepts');
      const shared = b.encoder !== null && b.encoder.tokenizer === b.extractor.tokenizerId;
      ids = shared ? b.extractor.ids(request.prompt) : null;
      sig = b.extractor.signals(request, ids === null ? null : ids.length);
    } catch (exc) {
      throw new Fallback('tokenizer_error', `${exc.name}: ${exc.message}`);
    }
    let embedding = [];
    if (b.encoder !== null) {
      try {
        embedding = ids !== null ? b.encoder.encodeIds(ids)
          : (b.encoder.encodeText ? await b.encoder.encodeText(request.prompt) : b.encoder.encodeIds(b.extractor.ids(request.prompt)));
      } catch (exc) {
        throw new Fallback('embedding_error', `${exc.name}: ${exc.message}`);
      }
    }
    const features = [...b.extractor.vector(sig), ...embedding].map(Math.fround);
    const raw = await this.rawScores(features);
    const core = b.core;
    const probabilities = core.probabilities(raw);
    return { tokens: sig.token_count, signals: sig, features, raw, probabilities,
      expected_cost: core.expectedCost(features[core.tokenIndex]), feasible: core.feasible(request.latency_sla_ms) };
  }

  async rawScores(features) {
    const b = this.bundle;
    const ort = require('onnxruntime-node');
    const m = b.candidates.length;
    if (b.scorer !== null) {
      try { return b.scorer(features); } catch (exc) { throw new Fallback('model_error', `${exc.name}: ${String(exc.message).slice(0, 200)}`); }
    }
    try {
      if (b.kind === 'pooled') {
        const width = features.length + 1 + b.candidateFeatures[0].length;
        const rows = new Float32Array(m * width);
        for (let j = 0; j < m; j++) {
          rows.set(features, j * width);
          rows[j * width + features.length] = j;
          rows.set(b.candidateFeatures[j], j * width + features.length + 1);
        }
        const out = await b.sessions[0].run({ input: new ort.Tensor('float32', rows, [m, width]) });
        const p = out.probabilities.data;
        return Array.from({ length: m }, (_, j) => p[j * 2 + 1]);
      }
      const input = new ort.Tensor('float32', Float32Array.from(features), [1, features.length]);
      const raw = [];
      for (const session of b.sessions) raw.push((await session.run({ input })).probabilities.data[1]);
      return raw;
    } catch (exc) {
      throw new Fallback('onnx_error', `${exc.name}: ${String(exc.message).slice(0, 200)}`);
    }
  }

  async learnedDecision(request, start, policy, objective) {
    const b = this.bundle;
    const s = await this.steps(request);
    if (!s.probabilities.every(Number.isFinite)) throw new Fallback('non_finite_output', 'the model returned a non-finite probability');
    const { chooseRow } = require('./decision');
    const j = chooseRow(policy, s.probabilities, s.expected_cost, s.feasible);
    const elapsed = performance.now() - start;
    if (this.config.deadlineMs !== null && elapsed > this.config.deadlineMs) {
      throw new Fallback('deadline_exceeded', `the learned path took ${formatFixed(elapsed, 2)} ms, over the ${this.config.deadlineMs} ms deadline`);
    }
    const p = s.probabilities[j];
    if (this.config.minConfidence !== null && p < this.config.minConfidence) {
      return this.heuristic(request, start, 'low_confidence', `P(correct)=${formatFixed(p, 3)} for ${b.candidates[j]} < min_confidence=${this.config.minConfidence}`, objective);
    }
    let why = `${policy.kind} policy (knob ${formatGeneral(policy.value, 6)}): P(correct)=${formatFixed(p, 3)}, expected cost ${formatGeneral(s.expected_cost[j], 6)}`;
    if (objective !== null) why = `${why}; objective ${objective}`;
    const probabilities = {};
    b.candidates.forEach((c, k) => { probabilities[c] = s.probabilities[k]; });
    return decision({ tier: b.catalogue.tierOf(b.candidates[j]), model: b.candidates[j], source: 'learned', reason: why,
      probabilities, expected_cost_usd: s.expected_cost[j], elapsed_ms: elapsed,
      signals: { token_count: s.signals.token_count, depth: s.signals.depth, is_structured: request.output_schema !== null,
        latency_sensitive: s.signals.latency_sensitive },
      bundle_id: b.bundleId, objective });
  }

  heuristic(request, start, code, detail, objective) {
    let verdict;
    try {
      if (LONE.test(request.prompt)) throw new Error('lone surrogate');
      verdict = treeDecide(...this.extractor.treeSignals(request));
    } catch (_) { // the exact counter failed: chars/4, as Python does
      const tokens = Math.floor(codePoints(request.prompt) / 4);
      const hits = this.extractor.hits(request.prompt).total;
      verdict = treeDecide(tokens, request.output_schema !== null, this.extractor.depth(hits, tokens),
        this.extractor.isLatencySensitive(request.latency_sla_ms));
    }
    const model = this.tierModels[verdict.tier];
    const why = detail === null ? code : `${code} (${detail})`;
    return decision({ tier: verdict.tier, model, source: 'heuristic', reason: `${why}; ${verdict.reason}`, node: verdict.node,
      expected_cost_usd: this.catalogue.cost(model, verdict.token_count, this.config.expectedOutputTokens),
      elapsed_ms: performance.now() - start,
      signals: { token_count: verdict.token_count, depth: verdict.depth, is_structured: verdict.is_structured,
        latency_sensitive: verdict.latency_sensitive },
      fallback: code, bundle_id: this.bundleId, objective });
  }
}

/** serving/decision_log.py request_id_for. */
function requestIdFor(item) {
  const given = item && typeof item === 'object' ? item.id : undefined;
  if ((typeof given === 'string' && require('./schema').pyStrip(given)) || Number.isInteger(given)) return given;
  return require('crypto').randomUUID().replace(/-/g, '');
}

/** A decision in the shape of Python's Decision.to_dict (schema_version 1). */
function decision(d) {
  return { schema_version: 1, tier: d.tier, model: d.model, source: d.source, reason: d.reason, node: d.node === undefined ? null : d.node,
    probabilities: d.probabilities || {}, expected_cost_usd: d.expected_cost_usd === undefined ? null : d.expected_cost_usd,
    elapsed_ms: Math.round(d.elapsed_ms * 10000) / 10000, signals: d.signals, fallback: d.fallback === undefined ? null : d.fallback,
    bundle_id: d.bundle_id === undefined ? null : d.bundle_id, propensity: 1.0, explored: false,
    objective: d.objective === undefined ? null : d.objective };
}

module.exports = { Router, FALLBACK_REASONS, Fallback };
