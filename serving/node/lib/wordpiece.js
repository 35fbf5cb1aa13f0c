'use strict';
// BERT's WordPiece tokenization as the HuggingFace `tokenizers` JSON of all-MiniLM-L6-v2 configures
// it (BertNormalizer: clean_text, handle_chinese_chars, strip_accents (= lowercase), lowercase;
// BertPreTokenizer; WordPiece with '##' and max_input_chars_per_word), ported from tokenizers' Rust.

const CONTROL_OR_ZERO = /[\p{C}]/u; // tokenizers' is_control: Unicode "Other" (Cc, Cf, Cn, Co, Cs), but \t \n \r
const BERT_WS = /^[\t\n\r \p{Zs}]$/u; // tokenizers' is_whitespace (clean_text)
const RUST_WS = /^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u; // char::is_whitespace
const PUNCT = /^\p{P}$/u;
const MARK = /^\p{Mn}$/u;

function isChinese(cp) {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df)
    || (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf)
    || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

function isBertPunc(ch) {
  const cp = ch.codePointAt(0);
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126) || PUNCT.test(ch);
}

class WordPiece {
  constructor(tokenizerJson) {
    const spec = typeof tokenizerJson === 'string' ? JSON.parse(tokenizerJson) : tokenizerJson;
    const norm = spec.normalizer || {};
    const model = spec.model || {};
    if (norm.type !== 'BertNormalizer' || (spec.pre_tokenizer || {}).type !== 'BertPreTokenizer' || model.type !== 'WordPiece') {
      throw new Error(`the tokenizer is ${norm.type} / ${(spec.pre_tokenizer || {}).type} / ${model.type}; `
        + 'this runtime implements BertNormalizer / BertPreTokenizer / WordPiece');
    }
    this.cleanText = norm.clean_text !== false;
    this.chinese = norm.handle_chinese_chars !== false;
    this.lowercase = norm.lowercase !== false;
    this.stripAccents = norm.strip_accents === null || norm.strip_accents === undefined ? this.lowercase : Boolean(norm.strip_accents);
    this.vocab = new Map(Object.entries(model.vocab));
    this.unk = this.vocab.get(model.unk_token);
    this.prefix = model.continuing_subword_prefix;
    this.maxChars = model.max_input_chars_per_word;
  }

  normalize(text) {
    let chars = Array.from(text);
    if (this.cleanText) {
      chars = chars.filter((c) => !(c === '\0' || c === '\ufffd' || (c !== '\t' && c !== '\n' && c !== '\r' && CONTROL_OR_ZERO.test(c))))
        .map((c) => (BERT_WS.test(c) ? ' ' : c));
    }
    if (this.chinese) chars = chars.flatMap((c) => (isChinese(c.codePointAt(0)) ? [' ', c, ' '] : [c]));
    if (this.stripAccents) chars = Array.from(chars.join('').normalize('NFD')).filter((c) => !MARK.test(c));
    if (this.lowercase) chars = chars.map((c) => c.toLowerCase());
    return chars.join('');
  }

  /** Words: split on whitespace (dropped) and on punctuation (each its own word). */
  preTokenize(text) {
    const words = [];
    let current = '';
    for (const c of text) {
      if (RUST_WS.test(c)) { if (current) words.push(current); current = ''; } else if (isBertPunc(c)) {
        if (current) words.push(current);
        words.push(c);
        current = '';
      } else current += c;
    }
    if (current) words.push(current);
    return words;
  }

  wordIds(word) {
    const chars = Array.from(word);
    if (chars.length > this.maxChars) return [this.unk];
    const ids = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let found = null;
      while (start < end) {
        const piece = (start > 0 ? this.prefix : '') + chars.slice(start, end).join('');
        if (this.vocab.has(piece)) { found = this.vocab.get(piece); break; }
        end -= 1;
      }
      if (found === null) return [this.unk];
      ids.push(found);
      start = end;
    }
    return ids;
  }

  /** The wordpiece ids of ``text`` (no [CLS]/[SEP]). */
  encode(text) { return this.preTokenize(this.normalize(text)).flatMap((w) => this.wordIds(w)); }
}

module.exports = { WordPiece };
