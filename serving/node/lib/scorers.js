'use strict';
// The numpy-served families' raw scorers (models/lowrank.py LowRankScorer, models/knn.py
// KNNScorer) over their model-*.npy arrays: features (d) -> m raw scores, in float64.

const path = require('path');
const { BundleError } = require('./errors');
const { readNpy } = require('./encoder');

const shapeOf = (a) => (a ? a.shape.join() : 'missing');

function lowRank(arrays, d, m) {
  const { center, scale, W, V, b } = arrays;
  const r = W && W.shape.length === 2 ? W.shape[0] : -1;
  const ok = center && scale && V && b && shapeOf(center) === `${d}` && shapeOf(scale) === `${d}` && shapeOf(W) === `${r},${d}`
    && shapeOf(V) === `${m},${r}` && shapeOf(b) === `${m}`;
  if (!ok) throw new Error(`arrays center ${shapeOf(center)}, scale ${shapeOf(scale)}, W ${shapeOf(W)}, V ${shapeOf(V)}, b ${shapeOf(b)} do not fit ${d} features and ${m} candidates`);
  return (x) => {
    const z = x.map((v, k) => {
      const q = ((Math.sign(v) * Math.log1p(Math.abs(v))) - center.data[k]) / scale.data[k];
      return Number.isFinite(q) ? Math.min(Math.max(q, -5.0), 5.0) : 0.0;
    });
    const h = Array.from({ length: r }, (_, i) => z.reduce((s, v, k) => s + v * W.data[i * d + k], 0));
    return Array.from({ length: m }, (_, j) => 0.5 * (1.0 + Math.tanh(0.5 * (h.reduce((s, v, i) => s + v * V.data[j * r + i], 0) + b.data[j]))));
  };
}

function knn(arrays, params, d, m) {
  const { center, scale, keys, weight, hits, prior } = arrays;
  const start = params.embedding_start === null || params.embedding_start === undefined ? 0 : params.embedding_start;
  const w = d - start;
  const n = keys && keys.shape.length === 2 ? keys.shape[0] : -1;
  const ok = Number.isInteger(params.k) && params.k >= 1 && params.n_features === d && n >= 1 && shapeOf(keys) === `${n},${w}`
    && shapeOf(weight) === `${n},${m}` && shapeOf(hits) === `${n},${m}` && shapeOf(prior) === `${m}` && shapeOf(center) === `${w}`
    && shapeOf(scale) === `${w}`;
  if (!ok) throw new Error(`arrays keys ${shapeOf(keys)}, weight ${shapeOf(weight)}, hits ${shapeOf(hits)}, prior ${shapeOf(prior)} and params ${JSON.stringify(params)} do not fit ${d} features and ${m} candidates`);
  const k = Math.min(params.k, n);
  const strength = Number(params.prior);
  return (x) => {
    const z = x.slice(start).map((v, c) => { const q = (v - center.data[c]) / scale.data[c]; return Number.isFinite(q) ? q : 0.0; });
    const norm = Math.sqrt(z.reduce((s, v) => s + v * v, 0));
    const unit = z.map((v) => v / (norm > 0 ? norm : 1.0));
    const sims = new Float64Array(n);
    for (let i = 0; i < n; i++) { let s = 0; for (let c = 0; c < w; c++) s += unit[c] * keys.data[i * w + c]; sims[i] = s; }
    const top = Array.from({ length: n }, (_, i) => i).sort((a, b) => sims[b] - sims[a] || a - b).slice(0, k);
    return Array.from({ length: m }, (_, j) => {
      let num = strength * prior.data[j];
      let den = strength;
      for (const i of top) { const s = Math.max(sims[i], 0.0); num += s * hits.data[i * m + j]; den += s * weight.data[i * m + j]; }
      return den > 0 ? num / den : prior.data[j];
    });
  };
}

/** The raw scorer of a knn or lowrank bundle (null for the ONNX kinds); BundleError when its arrays are damaged. */
function openScorer(dir, parts) {
  const kind = parts.model.kind;
  if (kind !== 'lowrank' && kind !== 'knn') return null;
  try {
    const arrays = {};
    for (const file of parts.model.files) arrays[file.replace(/^model-/, '').replace(/\.npy$/, '')] = readNpy(path.join(dir, file));
    const d = parts.names.length;
    const m = parts.candidates.length;
    return kind === 'lowrank' ? lowRank(arrays, d, m) : knn(arrays, parts.model.params || {}, d, m);
  } catch (exc) {
    throw new BundleError('bundle_invalid', `The ${kind} model of bundle '${dir}' cannot be opened (${exc.name}: ${String(exc.message).slice(0, 200)}). Re-export the bundle.`);
  }
}

module.exports = { openScorer };
