'use strict';
// The learned decision after the raw scores: ports of models/decision.py (calibration, expected
// cost, SLA feasibility), models/policy.py (choose_row) and models/objective.py (KnobCurve.pick).

const { ConfigError, BundleError } = require('./errors');

const OBJECTIVES = ['match-best', 'match-heuristic', 'max-accuracy'];
// models/policy.py ALL_TO_FRONTIER: a share knob below any gain, so every request goes to the frontier
const ALL_TO_FRONTIER = -2.0;
const FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** ``objective`` if it is a named objective or ``budget=USD`` (USD >= 0), else ConfigError. */
function checkObjective(objective, owner = 'objective') {
  if (typeof objective === 'string') {
    if (OBJECTIVES.includes(objective)) return objective;
    if (objective.startsWith('budget=')) {
      const text = objective.slice(7).trim();
      const value = FLOAT.test(text) ? Number(text) : NaN;
      if (Number.isFinite(value) && value >= 0) return objective;
    }
  }
  throw new ConfigError(`The ${owner} must be one of ('match-best', 'match-heuristic', 'max-accuracy') or 'budget=USD_PER_QUERY' `
    + `(a number >= 0, e.g. budget=0.002). Got ${JSON.stringify(objective)} instead.`);
}

/** numpy.interp on one value (the last knot <= x; an exact knot gives its y). */
function interp(x, xp, fp) {
  const n = xp.length;
  if (Number.isNaN(x)) return NaN;
  if (x < xp[0]) return fp[0];
  if (x > xp[n - 1]) return fp[n - 1];
  let lo = 0; let hi = n; // the largest j with xp[j] <= x
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xp[mid] <= x) lo = mid; else hi = mid; }
  const j = lo;
  if (j === n - 1 || xp[j] === x) return fp[j];
  const slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  let res = slope * (x - xp[j]) + fp[j];
  if (Number.isNaN(res)) {
    res = slope * (x - xp[j + 1]) + fp[j + 1];
    if (Number.isNaN(res) && fp[j] === fp[j + 1]) res = fp[j];
  }
  return res;
}

function calibration(raw, where) {
  const method = raw && typeof raw === 'object' ? raw.method : undefined;
  if (method === 'none') return { method };
  if (method === 'isotonic') {
    const ok = Array.isArray(raw.x) && Array.isArray(raw.y) && raw.x.length >= 1 && raw.x.length === raw.y.length
      && [...raw.x, ...raw.y].every((v) => typeof v === 'number' && Number.isFinite(v));
    if (!ok) throw new BundleError('bundle_invalid', `${where}: isotonic knots must be two equal-length finite lists. Re-export the bundle.`);
    return { method, x: raw.x, y: raw.y };
  }
  if (method === 'sigmoid' && typeof raw.a === 'number' && typeof raw.b === 'number') return { method, a: raw.a, b: raw.b };
  throw new BundleError('bundle_invalid', `${where}: expected a calibration with method isotonic (x, y), sigmoid (a, b) or none; `
    + `got ${JSON.stringify(raw)}. Re-export the bundle.`);
}

const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

function calibrate(cal, score) {
  if (cal.method === 'isotonic') return interp(clip(score, cal.x[0], cal.x[cal.x.length - 1]), cal.x, cal.y);
  if (cal.method === 'sigmoid') {
    const logit = Math.log(clip(score, 1e-6, 1 - 1e-6) / clip(1 - score, 1e-6, 1));
    return 1.0 / (1.0 + Math.exp(-(cal.a * logit + cal.b)));
  }
  return score;
}

/** models/policy.py choose_row: the chosen candidate's index (Python's max/min: the first best). */
function chooseRow(policy, proba, cost, feasible) {
  const m = proba.length;
  const ok = feasible && feasible.some(Boolean) ? feasible : new Array(m).fill(true);
  const argBest = (idx, key, better) => idx.reduce((best, k) => (best === -1 || better(key(k), key(best)) ? k : best), -1);
  const all = [...Array(m).keys()];
  if (policy.kind === 'threshold') {
    const clears = all.filter((k) => ok[k] && proba[k] >= policy.value);
    if (clears.length) return argBest(clears, (k) => cost[k], (a, b) => a < b);
    return argBest(all.filter((k) => ok[k]), (k) => proba[k], (a, b) => a > b);
  }
  if (policy.kind === 'lambda') return argBest(all.filter((k) => ok[k]), (k) => proba[k] - policy.value * cost[k], (a, b) => a > b);
  const frontier = policy.frontier !== null && policy.frontier !== undefined ? policy.frontier : argBest(all, (k) => proba[k], (a, b) => a > b);
  const others = all.map((k) => (ok[k] && k !== frontier ? proba[k] : -Infinity));
  const bestOther = argBest(all, (k) => others[k], (a, b) => a > b);
  if (!ok[frontier]) return bestOther;
  if (!others.some(Number.isFinite)) return frontier;
  return proba[frontier] - proba[bestOther] > policy.value ? frontier : bestOther;
}

function fmtG(x) { return require('./pyformat').formatGeneral(x, 6); }
function fmtF4(x) { return require('./pyformat').formatFixed(x, 4); }

const maxBy = (items, key) => items.reduce((best, p) => (best === null || cmp(key(p), key(best)) > 0 ? p : best), null);
const minBy = (items, key) => items.reduce((best, p) => (best === null || cmp(key(p), key(best)) < 0 ? p : best), null);
function cmp(a, b) { for (let i = 0; i < a.length; i++) { if (a[i] < b[i]) return -1; if (a[i] > b[i]) return 1; } return 0; }

/** An optional number of the curve (0 when absent; NaN, refused, when not a number). */
const optionalNumber = (v) => (v === undefined ? 0 : typeof v === 'number' ? v : NaN);

/** models/objective.py KnobCurve (from the manifest's ``objective.curve``). */
class KnobCurve {
  constructor(raw, where) {
    const bad = () => new BundleError('bundle_invalid', `The ${where} is damaged; got ${JSON.stringify(raw).slice(0, 80)}. Re-export the bundle.`);
    if (!raw || typeof raw !== 'object' || !Array.isArray(raw.points) || !raw.points.length) throw bad();
    const point = (p) => ({
      knob: Number(p.knob), accuracy: Number(p.accuracy), cost: Number(p.cost_per_query),
      seBest: optionalNumber(p.se_best), seTree: optionalNumber(p.se_tree),
    });
    const index = (v) => (Number.isInteger(v) && v >= 0 ? v : NaN);
    if (raw.points.some((p) => !p || typeof p !== 'object' || (p.candidate !== undefined && p.candidate !== null))) throw bad();
    this.points = raw.points.map(point);
    // the anchor: every request to the best single candidate (share at 100%); the policy the knobs set
    this.anchor = raw.anchor === undefined || raw.anchor === null ? null
      : (raw.anchor && typeof raw.anchor === 'object' ? { ...point(raw.anchor), candidate: index(raw.anchor.candidate) } : { knob: NaN });
    this.kind = raw.kind === undefined || raw.kind === null ? null : raw.kind;
    this.frontier = raw.frontier === undefined || raw.frontier === null ? null : index(raw.frontier);
    if (this.kind !== null && !['threshold', 'lambda', 'share'].includes(this.kind)) throw bad();
    this.best = Number(raw.best_single_accuracy);
    this.heuristic = Number(raw.heuristic_accuracy);
    this.target = raw.target === undefined ? 1.0 : Number(raw.target);
    this.default = raw.default === undefined ? 'match-best' : String(raw.default);
    this.z = optionalNumber(raw.margin_z);
    if ([this.best, this.heuristic, this.target].some(Number.isNaN) || !(this.z >= 0) || !Number.isFinite(this.z)) throw bad();
    const all = this.anchor === null ? this.points : [...this.points, this.anchor];
    if (all.some((p) => Number.isNaN(p.knob + p.accuracy + p.cost) || !(p.seBest >= 0 && p.seTree >= 0)
      || !Number.isFinite(p.seBest + p.seTree))) throw bad();
    if ((this.anchor !== null && Number.isNaN(this.anchor.candidate)) || Number.isNaN(this.frontier)) throw bad();
    try { checkObjective(this.default, 'default objective of the KnobCurve'); } catch (_) { throw bad(); }
  }

  /** {objective, knob, candidate, reached, note} for an objective (the curve's default when null);
   * candidate: the anchor's, when the point is the anchor (every request to it), else null. */
  pick(objective = null) {
    const obj = checkObjective(objective === null ? this.default : objective);
    const pts = this.anchor === null ? this.points : [...this.points, this.anchor];
    const at = (p, reached, note) => ({ objective: obj, knob: p.knob, candidate: p === this.anchor ? p.candidate : null, reached, note });
    if (obj.startsWith('budget=')) {
      const budget = Number(obj.slice(7).trim());
      const within = pts.filter((p) => p.cost <= budget);
      if (within.length) return at(maxBy(within, (p) => [p.accuracy, -p.cost]), true);
      return at(minBy(pts, (p) => [p.cost, -p.accuracy]), false);
    }
    if (obj === 'max-accuracy') return at(maxBy(pts, (p) => [p.accuracy, -p.cost]), true);
    // models/objective.py KnobCurve._match and _floor: a point reaches a goal when its accuracy less z
    // paired standard errors does; the points below the tree's accuracy are out when some point holds it
    // with z standard errors to spare; else the anchor, when it does; else as measured
    const z = this.z;
    const goal = obj === 'match-best' ? this.target * this.best : this.heuristic;
    const sure = (p) => p.accuracy - z * (obj === 'match-best' ? p.seBest : p.seTree);
    const allowed = this.floor();
    const reaching = allowed.filter((p) => sure(p) >= goal - 1e-12);
    if (reaching.length) return at(minBy(reaching, (p) => [p.cost, -p.accuracy]), true);
    const fallback = maxBy(allowed, (p) => [p.accuracy, -p.cost]);
    return at(fallback, false, `not reached out of fold (best ${fmtF4(fallback.accuracy)})`);
  }

  floor() {
    const tree = this.heuristic;
    const held = this.points.filter((p) => p.accuracy - this.z * p.seTree >= tree - 1e-12);
    if (this.points.some((p) => p.accuracy - this.z * p.seTree >= tree)) return held;
    if (this.anchor !== null && this.anchor.accuracy - this.z * this.anchor.seTree >= tree - 1e-12) return [this.anchor];
    if (this.points.some((p) => p.accuracy >= tree)) return this.points.filter((p) => p.accuracy >= tree - 1e-12);
    return this.points;
  }

  /** The policy a picked point stands for (models/objective.py KnobCurve.policy). */
  policy(point, served) {
    if (point.candidate !== null) return { kind: 'share', value: ALL_TO_FRONTIER, frontier: point.candidate };
    if (this.kind !== null) return { kind: this.kind, value: point.knob, frontier: this.frontier };
    return { kind: served.kind, value: point.knob, frontier: served.frontier };
  }
}

/** Everything between raw scores and a choice (models/decision.py DecisionCore). */
class DecisionCore {
  constructor({ candidates, tokenIndex, calibrations, intercept, slope, p95, policy, curve }) {
    Object.assign(this, { candidates, tokenIndex, calibrations, intercept, slope, p95, policy, curve });
    const known = p95.map((v, j) => [v, j]).filter(([v]) => !Number.isNaN(v));
    this.fastest = known.length ? known.reduce((a, b) => (b[0] < a[0] ? b : a))[1] : -1;
  }

  probabilities(raw) { return raw.map((s, j) => calibrate(this.calibrations[j], s)); }

  expectedCost(tokens) { return this.intercept.map((a, j) => Math.max(a + tokens * this.slope[j], 0.0)); }

  feasible(sla) {
    if (sla === null || this.fastest < 0) return null;
    const fits = this.p95.map((p) => !(p > sla));
    if (!fits.some(Boolean)) fits[this.fastest] = true;
    return fits;
  }

  policyFor(objective) {
    if (objective === null) return this.policy;
    if (this.curve === null) {
      throw new BundleError('bundle_invalid', 'This router was trained without an out-of-fold knob curve, so it serves its fixed '
        + `policy and cannot take objective ${JSON.stringify(objective)}. Retrain it with this tierroute to choose objectives at serve time.`);
    }
    return this.curve.policy(this.curve.pick(objective), this.policy);
  }
}

module.exports = { OBJECTIVES, checkObjective, interp, calibration, calibrate, chooseRow, KnobCurve, DecisionCore, fmtG };
