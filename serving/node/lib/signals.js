'use strict';
// Request signals and the heuristic tree: ports of features/keywords.py, features/shape.py,
// features/signals.py and models/heuristic.py. Python's regular expressions are matched with
// their Python meaning: \w, \d and \s are Unicode-aware there, '^'/'$' in MULTILINE mode see
// only '\n' as a line break, and '.' is anything but '\n'.

const { Tiktoken } = require('js-tiktoken/lite');
const { ConfigError } = require('./errors');
const { SCHEMA_KINDS, schemaVector, summarizeSchema, PY_WS } = require('./schema');
const { codePoints } = require('./request');

const REASONING_KEYWORDS = ['analyze', 'compare', 'synthesize', 'debug', 'explain why', 'step by step', 'chain of thought',
  'evaluate', 'critique'];
const DEFAULT_SIGNALS = { tokenizer: 'bpe:o200k_base', keywords: REASONING_KEYWORDS, keyword_cap: 2, long_prompt_tokens: 1000,
  very_long_prompt_tokens: 3000, max_depth: 5, latency_sensitive_ms: 200.0 };
const SCHEMA_FEATURE_NAMES = ['schema_present', ...SCHEMA_KINDS.slice(1).map((k) => `schema_kind_${k}`), 'schema_n_fields',
  'schema_n_required', 'schema_n_enum_fields', 'schema_n_enum_values', 'schema_depth', 'schema_n_tools'];
const SHAPE_FEATURE_NAMES = ['shape_chars', 'shape_lines', 'shape_code_blocks', 'shape_has_code', 'shape_questions',
  'shape_list_items', 'shape_urls', 'shape_digit_frac', 'shape_non_ascii_frac'];

const W = '[\\p{L}\\p{N}_]'; // Python's \w on str
const NOT_WS = `[^${PY_WS}]`;
const BOL = '(?<=^|\\n)'; // Python's '^' under MULTILINE
const EOL = '(?=\\n|$)'; // Python's '$' under MULTILINE
const LIST_ITEM = new RegExp(`${BOL}[ \\t]*(?:[-*•+·▪‣]|\\p{Nd}{1,3}[.)]|[a-zA-Z][.)]|\\(${W}\\))[ \\t]+${NOT_WS}`, 'gu');
const FENCE = new RegExp(`${BOL}[ \\t]*(\`\`\`|~~~)`, 'gu');
const URL = new RegExp(`https?://${NOT_WS}+`, 'gu');
const DIGIT = /\p{Nd}/gu;
const CODE_LINE = new RegExp(`${BOL}(?: {4}|\\t)${NOT_WS}[^\\n]*${EOL}|[;{][${PY_WS}]*${EOL}`, 'u');
const QUESTION_MARKS = ['?', '\uff1f', '\u061f', '\u037e', '\u055e'];

const countOf = (text, sub) => (sub.length ? text.split(sub).length - 1 : 0);
const matches = (re, text) => { re.lastIndex = 0; let n = 0; while (re.exec(text) !== null) n += 1; return n; };
const slug = (kw) => kw.toLowerCase().replace(/[^0-9a-z]+/g, '_').replace(/^_+|_+$/g, '');
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** features/shape.py prompt_shape. */
function promptShape(prompt, n) {
  const asciiOnly = /^[\x00-\x7f]*$/.test(prompt);
  const fences = prompt.includes('```') || prompt.includes('~~~') ? matches(FENCE, prompt) : 0;
  const hasCode = fences || ((prompt.includes(';') || prompt.includes('{') || prompt.includes('    ') || prompt.includes('\t'))
    && CODE_LINE.test(prompt)) ? 1 : 0;
  const questions = asciiOnly ? countOf(prompt, '?') : QUESTION_MARKS.reduce((s, m) => s + countOf(prompt, m), 0);
  let digitFrac = 0;
  let nonAsciiFrac = 0;
  if (n) {
    const digits = asciiOnly ? (prompt.match(/[0-9]/g) || []).length : matches(DIGIT, prompt);
    digitFrac = digits / n;
    if (!asciiOnly) {
      let ascii = 0;
      for (let i = 0; i < prompt.length; i++) if (prompt.charCodeAt(i) < 128) ascii += 1;
      nonAsciiFrac = (n - ascii) / n;
    }
  }
  return { chars: n, lines: n ? countOf(prompt, '\n') + 1 : 0, code_blocks: Math.floor((fences + 1) / 2), has_code: hasCode,
    questions, list_items: matches(LIST_ITEM, prompt), urls: prompt.includes('http') ? matches(URL, prompt) : 0,
    digit_frac: digitFrac, non_ascii_frac: nonAsciiFrac };
}

function reasoningDepth(hits, tokens, cfg) {
  let score = 1 + Math.min(hits, cfg.keyword_cap);
  score += tokens > cfg.long_prompt_tokens ? 1 : 0;
  score += tokens > cfg.very_long_prompt_tokens ? 1 : 0;
  return Math.min(score, cfg.max_depth);
}

let o200k = null;
function bpe(encoding) {
  if (encoding !== 'o200k_base') {
    throw new ConfigError(`The Node runtime counts tokens with o200k_base (js-tiktoken); the bundle asks for ${encoding}. `
      + 'Serve this bundle with the Python runtime, or retrain with the default tokenizer.');
  }
  if (o200k === null) o200k = new Tiktoken(require('js-tiktoken/ranks/o200k_base'));
  return o200k;
}

/** Signals and feature vectors under one SignalConfig (a bundle's manifest ``signals``). */
class SignalExtractor {
  constructor(config = DEFAULT_SIGNALS) {
    const cfg = { ...DEFAULT_SIGNALS, ...config };
    const kind = String(cfg.tokenizer).split(':')[0];
    const arg = String(cfg.tokenizer).slice(kind.length + 1);
    if (kind === 'bpe') { this.tokenizerId = `bpe:${arg}`; this.encoder = bpe(arg); this.charsPerToken = null; }
    else if (kind === 'approx' && arg.startsWith('chars/') && Number.isFinite(Number(arg.slice(6)))) {
      this.tokenizerId = cfg.tokenizer; this.encoder = null; this.charsPerToken = Number(arg.slice(6));
    } else {
      throw new ConfigError(`Unknown token counter ${JSON.stringify(cfg.tokenizer)}; expected 'bpe:o200k_base' or 'approx:chars/N'.`);
    }
    this.config = cfg;
    this.keywords = cfg.keywords.map((k) => k.toLowerCase());
    this.wordPatterns = this.keywords.map((k) => new RegExp(`(?<!${W})${escape(k)}(?!${W})`, 'u'));
    const slugs = this.keywords.map(slug);
    this.featureNames = ['n_tokens', ...slugs.map((s) => `kw_${s}`), ...slugs.map((s) => `kwb_${s}`), 'kw_total', 'kw_word_total',
      'kw_occurrences', 'depth_score', 'sla_ms', 'sla_missing', 'latency_sensitive', ...SCHEMA_FEATURE_NAMES, ...SHAPE_FEATURE_NAMES];
  }

  /** The BPE ids of ``text`` (their number is the exact token count); special-token text is plain text. */
  ids(text) { return this.encoder.encode(text, [], []); }

  count(text) {
    if (this.encoder !== null) return this.ids(text).length;
    return Math.ceil(codePoints(text) / this.charsPerToken);
  }

  hits(prompt) {
    const lower = prompt.toLowerCase();
    const present = this.keywords.map((k) => (lower.includes(k) ? 1 : 0));
    const occurrences = this.keywords.reduce((s, k, i) => s + (present[i] ? countOf(lower, k) : 0), 0);
    const wordPresent = this.wordPatterns.map((re, i) => (present[i] && re.test(lower) ? 1 : 0));
    const sum = (a) => a.reduce((s, v) => s + v, 0);
    return { present, word_present: wordPresent, total: sum(present), word_total: sum(wordPresent), occurrences };
  }

  depth(hits, tokens) { return reasoningDepth(hits, tokens, this.config); }

  isLatencySensitive(sla) { return sla !== null && sla < this.config.latency_sensitive_ms; }

  /** Every signal of a parsed request (the conformance file's ``signals``). */
  signals(request, tokenCount = null) {
    const tokens = tokenCount === null ? this.count(request.prompt) : tokenCount;
    const kw = this.hits(request.prompt);
    return { token_count: tokens, keywords: kw, depth: this.depth(kw.total, tokens),
      schema: request.schema_summary || summarizeSchema(request.output_schema), sla_ms: request.latency_sla_ms,
      latency_sensitive: this.isLatencySensitive(request.latency_sla_ms), shape: promptShape(request.prompt, codePoints(request.prompt)) };
  }

  /** The signal columns, in featureNames order (NaN marks a missing SLA). */
  vector(sig) {
    const kw = sig.keywords;
    const s = sig.shape;
    return [sig.token_count, ...kw.present, ...kw.word_present, kw.total, kw.word_total, kw.occurrences, sig.depth,
      sig.sla_ms === null ? NaN : sig.sla_ms, sig.sla_ms === null ? 1 : 0, sig.latency_sensitive ? 1 : 0, ...schemaVector(sig.schema),
      s.chars, s.lines, s.code_blocks, s.has_code, s.questions, s.list_items, s.urls, s.digit_frac, s.non_ascii_frac];
  }

  /** The tree's four inputs. */
  treeSignals(request) {
    const tokens = this.count(request.prompt);
    return [tokens, request.output_schema !== null, this.depth(this.hits(request.prompt).total, tokens),
      this.isLatencySensitive(request.latency_sla_ms)];
  }
}

/** models/heuristic.py HeuristicTree.decide with the article's thresholds. */
function treeDecide(tokenCount, isStructured, depth, latencySensitive, p = { token_limit: 500, tier1_max_depth: 2, tier2_max_depth: 3 }) {
  const small = tokenCount < p.token_limit;
  const shallow = depth <= p.tier1_max_depth;
  let tier; let node; let reason;
  if (small && isStructured && shallow) {
    tier = 'tier1'; node = 'rule1';
    reason = `rule1: ${tokenCount} tokens < ${p.token_limit}, output schema given, depth ${depth} <= ${p.tier1_max_depth}`;
  } else {
    const whyNot = !small ? `${tokenCount} tokens >= ${p.token_limit}` : !isStructured ? 'no output schema'
      : `depth ${depth} > ${p.tier1_max_depth}`;
    if (depth <= p.tier2_max_depth && !latencySensitive) {
      tier = 'tier2'; node = 'rule2';
      reason = `rule2: not rule1 (${whyNot}); depth ${depth} <= ${p.tier2_max_depth}, not latency-sensitive`;
    } else {
      tier = 'tier3'; node = 'rule3';
      const why = depth > p.tier2_max_depth ? `depth ${depth} > ${p.tier2_max_depth}` : 'latency-sensitive';
      reason = `rule3: not rule1 (${whyNot}); not rule2 (${why})`;
    }
  }
  return { tier, node, reason, token_count: tokenCount, depth, is_structured: isStructured, latency_sensitive: latencySensitive };
}

module.exports = { SignalExtractor, treeDecide, promptShape, DEFAULT_SIGNALS, REASONING_KEYWORDS };
