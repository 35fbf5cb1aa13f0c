'use strict';
// Python's float formatting ('%.Nf', '%.Ng', repr-free), exactly: the double's exact decimal value,
// rounded half to even, as CPython does (JS toFixed rounds exact ties away from zero).

const F64 = new Float64Array(1);
const U64 = new BigUint64Array(F64.buffer);

/** [negative, digits (BigInt), k]: |x| = digits / 10^k exactly (x finite). */
function exactDecimal(x) {
  F64[0] = x;
  const bits = U64[0];
  const negative = (bits >> 63n) === 1n;
  const expBits = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & 0xfffffffffffffn;
  let e2;
  if (expBits === 0) e2 = -1074; else { mantissa |= 1n << 52n; e2 = expBits - 1075; }
  if (e2 >= 0) return [negative, mantissa << BigInt(e2), 0];
  const k = -e2;
  return [negative, mantissa * 5n ** BigInt(k), k];
}

/** round(n / 10^drop), half to even. */
function roundDrop(n, drop) {
  if (drop <= 0) return n * 10n ** BigInt(-drop);
  const div = 10n ** BigInt(drop);
  const q = n / div;
  const r = n % div;
  const twice = 2n * r;
  if (twice > div || (twice === div && (q & 1n) === 1n)) return q + 1n;
  return q;
}

function special(x) {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  return null;
}

/** Python f'{x:.{prec}f}'. */
function formatFixed(x, prec) {
  const s = special(x);
  if (s !== null) return s;
  const [negative, digits, k] = exactDecimal(x);
  const q = roundDrop(digits, k - prec);
  let text = q.toString().padStart(prec + 1, '0');
  if (prec > 0) text = `${text.slice(0, text.length - prec)}.${text.slice(text.length - prec)}`;
  return (negative ? '-' : '') + text;
}

/** Python f'{x:.{prec}g}'. */
function formatGeneral(x, prec = 6) {
  const s = special(x);
  if (s !== null) return s;
  const p = prec === 0 ? 1 : prec;
  const [negative, digits, k] = exactDecimal(x);
  const sign = negative ? '-' : '';
  if (digits === 0n) return `${sign}0`;
  const len = digits.toString().length;
  let exp = len - 1 - k; // exponent of the leading digit
  let q = roundDrop(digits, len - p);
  if (q.toString().length > p) { q /= 10n; exp += 1; }
  let mant = q.toString().padEnd(p, '0');
  if (exp >= -4 && exp < p) {
    let text;
    if (exp >= 0) {
      text = mant.slice(0, exp + 1) + (p > exp + 1 ? `.${mant.slice(exp + 1)}` : '');
    } else {
      text = `0.${'0'.repeat(-exp - 1)}${mant}`;
    }
    if (text.includes('.')) text = text.replace(/0+$/, '').replace(/\.$/, '');
    return sign + text;
  }
  mant = mant.length > 1 ? `${mant[0]}.${mant.slice(1)}`.replace(/0+$/, '').replace(/\.$/, '') : mant;
  const e = Math.abs(exp).toString().padStart(2, '0');
  return `${sign}${mant}e${exp < 0 ? '-' : '+'}${e}`;
}

/** Python repr(float) (for error messages and JSON digests: the shortest round-trip digits). */
function reprFloat(x) {
  const s = special(x);
  if (s !== null) return s;
  if (Object.is(x, -0)) return '-0.0';
  if (x === 0) return '0.0';
  let [mant, exp] = x.toExponential().split('e');
  const e = Number(exp);
  const digits = mant.replace('-', '').replace('.', '');
  const sign = x < 0 ? '-' : '';
  if (e >= -4 && e < 16) {
    if (e >= 0) {
      const intPart = digits.slice(0, e + 1).padEnd(e + 1, '0');
      const frac = digits.slice(e + 1);
      return `${sign}${intPart}.${frac || '0'}`;
    }
    return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
  }
  mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${mant}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
}

module.exports = { formatFixed, formatGeneral, reprFloat };
