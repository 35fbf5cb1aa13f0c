'use strict';
// The MiniLM-ONNX encoder (features/minilm_onnx.py): the prompt's first head_chars and last
// tail_chars characters (joined by '\n'), WordPiece ids, their first head_tokens and last
// tail_tokens, [CLS] ... [SEP] through minilm.onnx (mean pooling and L2 normalisation are in the graph).

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { FeatureError } = require('./errors');
const { parseRaw, plain, pyDumps } = require('./pyjson');
const { WordPiece } = require('./wordpiece');

const headTail = (items, head, tail) => (items.length <= head + tail ? items
  : (tail ? [...items.slice(0, head), ...items.slice(items.length - tail)] : items.slice(0, head)));

class MiniLMEncoder {
  /** Reads and checks the three files (sync); ``open`` starts the onnxruntime session. */
  constructor(dir) {
    try {
      const raw = parseRaw(fs.readFileSync(path.join(dir, 'minilm.json'), 'utf8'));
      this.settings = plain(raw);
      if (this.settings.format !== 1) throw new Error(`format ${this.settings.format}; this runtime reads format 1`);
      const tokenizerText = fs.readFileSync(path.join(dir, 'minilm_tokenizer.json'), 'utf8');
      this.wordpiece = new WordPiece(tokenizerText);
      this.modelPath = path.join(dir, 'minilm.onnx');
      const modelSha = crypto.createHash('sha256').update(fs.readFileSync(this.modelPath)).digest();
      const digest = crypto.createHash('sha256').update(pyDumps(raw))
        .update(crypto.createHash('sha256').update(tokenizerText, 'utf8').digest()).update(modelSha).digest('hex').slice(0, 12);
      const s = this.settings;
      this.dims = s.dims;
      this.tokenizer = s.tokenizer;
      this.id = `minilm-onnx:${s.name}:${s.dims}:cut${s.head_chars}+${s.tail_chars}c${s.head_tokens}+${s.tail_tokens}w:${digest}`;
    } catch (exc) {
      throw new FeatureError(`Cannot read the MiniLM-ONNX encoder in '${dir}' (${exc.name}: ${exc.message}). Re-export the model.`);
    }
    this.session = null;
  }

  async open(threads = 1) {
    const ort = require('onnxruntime-node');
    try {
      this.session = await ort.InferenceSession.create(this.modelPath, { intraOpNumThreads: threads, interOpNumThreads: 1,
        executionMode: 'sequential', logSeverityLevel: 3, executionProviders: ['cpu'] });
    } catch (exc) {
      throw new FeatureError(`onnxruntime cannot load the MiniLM graph '${this.modelPath}' (${exc.name}: ${String(exc.message).slice(0, 200)}). Re-export it.`);
    }
    const names = this.session.inputNames;
    if (JSON.stringify(names) !== JSON.stringify(this.settings.inputs) || JSON.stringify(this.session.outputNames) !== JSON.stringify([this.settings.output])) {
      throw new FeatureError(`The MiniLM graph takes ${JSON.stringify(names)}; expected ${JSON.stringify(this.settings.inputs)}. Re-export it.`);
    }
    return this;
  }

  /** The wordpiece ids the model sees for ``text`` (the character cut, then the wordpiece cut). */
  cutIds(text) {
    const s = this.settings;
    const chars = Array.from(text);
    const cut = chars.length <= s.head_chars + s.tail_chars ? text
      : (s.tail_chars ? `${chars.slice(0, s.head_chars).join('')}\n${chars.slice(chars.length - s.tail_chars).join('')}` : chars.slice(0, s.head_chars).join(''));
    return headTail(this.wordpiece.encode(cut), s.head_tokens, s.tail_tokens);
  }

  /** The embedding (dims float32 values) of one prompt. */
  async encodeText(text) {
    const ort = require('onnxruntime-node');
    const ids = [this.settings.cls_id, ...this.cutIds(text), this.settings.sep_id];
    const inputIds = new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
    const mask = new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
    const out = await this.session.run({ [this.settings.inputs[0]]: inputIds, [this.settings.inputs[1]]: mask });
    return Array.from(out[this.settings.output].data);
  }
}

module.exports = { MiniLMEncoder };
