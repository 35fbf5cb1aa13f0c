'use strict';
// The candidate catalogue (models/catalogue.py): tiers cheapest first, models, prices, latencies.

const { ConfigError } = require('./errors');

class Catalogue {
  constructor(raw) {
    if (!raw || !Array.isArray(raw.tiers) || !raw.tiers.length || !Array.isArray(raw.candidates)) {
      throw new ConfigError(`A catalogue needs 'tiers' and 'candidates' lists; got ${JSON.stringify(raw).slice(0, 80)}. Re-export the bundle.`);
    }
    this.name = String(raw.name);
    this.tiers = raw.tiers.map(String);
    this.candidates = raw.candidates.map((c) => {
      if (!c || typeof c.model !== 'string' || !this.tiers.includes(c.tier) || typeof c.input_per_1k !== 'number'
        || typeof c.output_per_1k !== 'number') {
        throw new ConfigError(`Catalogue '${this.name}' has a malformed candidate ${JSON.stringify(c)}; expected model, tier (one of `
          + `${this.tiers.join(', ')}), input_per_1k and output_per_1k. Re-export the bundle.`);
      }
      return { ...c };
    });
    this.index = new Map(this.candidates.map((c) => [c.model, c]));
  }

  has(model) { return this.index.has(model); }

  candidate(model) {
    const c = this.index.get(model);
    if (!c) throw new ConfigError(`unknown model '${model}'; catalogue '${this.name}' has ${[...this.index.keys()].join(', ')}.`);
    return c;
  }

  tierOf(model) { return this.candidate(model).tier; }

  /** USD for one call with these token counts (the same IEEE arithmetic as Python). */
  cost(model, inputTokens, outputTokens) {
    const c = this.candidate(model);
    return (inputTokens * c.input_per_1k + outputTokens * c.output_per_1k) / 1000.0;
  }

  modelsInTier(tier) {
    const members = this.candidates.filter((c) => c.tier === tier);
    return members.sort((a, b) => {
      const pa = a.input_per_1k + a.output_per_1k;
      const pb = b.input_per_1k + b.output_per_1k;
      if (pa !== pb) return pa < pb ? -1 : 1;
      return a.model < b.model ? -1 : a.model > b.model ? 1 : 0;
    });
  }

  defaultModel(tier) {
    const members = this.modelsInTier(tier);
    if (!members.length) throw new ConfigError(`tier '${tier}' of catalogue '${this.name}' has no candidates.`);
    const marked = members.find((c) => c.default);
    return (marked || members[0]).model;
  }

  servingModel(tier) {
    const rank = this.tiers.indexOf(tier);
    if (rank < 0) throw new ConfigError(`unknown tier '${tier}'; this catalogue has ${this.tiers.join(', ')}.`);
    const order = [...this.tiers.slice(rank), ...this.tiers.slice(0, rank).reverse()];
    for (const t of order) if (this.modelsInTier(t).length) return this.defaultModel(t);
    throw new ConfigError(`catalogue '${this.name}' has no candidates at all.`);
  }

  /** The model serving each of the tree's tiers (serving/router.py _tree_tier_models). */
  treeTierModels() {
    const TIERS = ['tier1', 'tier2', 'tier3'];
    const out = {};
    TIERS.forEach((name, rank) => {
      let tier = name;
      if (!this.tiers.includes(tier)) tier = this.tiers[pyRound((rank * (this.tiers.length - 1)) / (TIERS.length - 1))];
      out[name] = this.servingModel(tier);
    });
    return out;
  }
}

/** Python's round() to an integer (half to even). */
function pyRound(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The built-in 'article' catalogue (tierroute/catalogues/article.toml), for a router without a bundle. */
function articleCatalogue() { return new Catalogue(require('./article-catalogue.json')); }

module.exports = { Catalogue, articleCatalogue };
