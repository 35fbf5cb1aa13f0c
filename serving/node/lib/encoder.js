'use strict';
// The static encoder (features/static.py): the sum of distilled token vectors over a prompt's
// o200k BPE ids (head and tail), L2-normalised, in float32 as numpy computes it.

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { FeatureError } = require('./errors');

/** A .npy file (version 1/2/3, little-endian int64 / float32 / float64, C order) as {shape, data, bytes}. */
function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new FeatureError(`${path.basename(file)} is not a .npy file.`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const order = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !order || !shape || order[1] !== 'False') throw new FeatureError(`${path.basename(file)} has an unexpected .npy header ${header.trim()}.`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const bytes = buf.subarray(start);
  let data;
  if (descr[1] === '<i8') {
    if (bytes.length !== count * 8) throw new FeatureError(`${path.basename(file)} is truncated.`);
    const copy = new BigInt64Array(count);
    for (let i = 0; i < count; i++) copy[i] = bytes.readBigInt64LE(i * 8);
    data = copy;
  } else if (descr[1] === '<f4') {
    if (bytes.length !== count * 4) throw new FeatureError(`${path.basename(file)} is truncated.`);
    data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = bytes.readFloatLE(i * 4);
  } else if (descr[1] === '<f8') {
    if (bytes.length !== count * 8) throw new FeatureError(`${path.basename(file)} is truncated.`);
    data = new Float64Array(count);
    for (let i = 0; i < count; i++) data[i] = bytes.readDoubleLE(i * 8);
  } else {
    throw new FeatureError(`${path.basename(file)} holds dtype ${descr[1]}; expected <i8, <f4 or <f8.`);
  }
  return { shape: dims, data, bytes };
}

class StaticEncoder {
  constructor(ids, idsBytes, table, tableBytes, dims, settings) {
    this.dims = dims;
    this.head = settings.head_tokens;
    this.tail = settings.tail_tokens;
    this.tokenizer = settings.tokenizer;
    this.table = table;
    this.rows = new Map();
    for (let i = 0; i < ids.length; i++) this.rows.set(Number(ids[i]), i);
    const digest = crypto.createHash('sha256').update(idsBytes).update(tableBytes).digest('hex').slice(0, 12);
    this.id = `${settings.name}:${dims}:${digest}`;
  }

  static load(dir) {
    try {
      const ids = readNpy(path.join(dir, 'static_ids.npy'));
      const table = readNpy(path.join(dir, 'static_table.npy'));
      const settings = JSON.parse(fs.readFileSync(path.join(dir, 'static.json'), 'utf8'));
      if (ids.shape.length !== 1 || table.shape.length !== 2 || ids.shape[0] !== table.shape[0] || !(ids.data instanceof BigInt64Array)
        || !(table.data instanceof Float32Array)) {
        throw new FeatureError(`token ids of shape ${JSON.stringify(ids.shape)} and a table of shape ${JSON.stringify(table.shape)} do not fit`);
      }
      for (const key of ['tokenizer', 'name', 'head_tokens', 'tail_tokens']) if (settings[key] === undefined) throw new FeatureError(`static.json has no '${key}'`);
      return new StaticEncoder(ids.data, ids.bytes, table.data, table.bytes, table.shape[1], settings);
    } catch (exc) {
      throw new FeatureError(`Cannot read the static encoder in '${dir}' (${exc.name}: ${exc.message}). Re-export the model.`);
    }
  }

  /** The embedding (dims floats, float32 values) of a prompt's BPE ids. */
  encodeIds(allIds) {
    const ids = allIds.length <= this.head + this.tail ? allIds
      : (this.tail ? [...allIds.slice(0, this.head), ...allIds.slice(allIds.length - this.tail)] : allIds.slice(0, this.head));
    const out = new Float32Array(this.dims);
    for (const id of ids) {
      const row = this.rows.get(id);
      if (row === undefined) continue; // unknown tokens are left out (numpy adds a zero row)
      const base = row * this.dims;
      for (let d = 0; d < this.dims; d++) out[d] = Math.fround(out[d] + this.table[base + d]);
    }
    let squared = 0;
    for (let d = 0; d < this.dims; d++) squared = Math.fround(squared + Math.fround(out[d] * out[d]));
    if (squared > 0) {
      const scale = Math.fround(1.0 / Math.sqrt(squared));
      for (let d = 0; d < this.dims; d++) out[d] = Math.fround(out[d] * scale);
    }
    return Array.from(out);
  }
}

module.exports = { StaticEncoder, readNpy };
