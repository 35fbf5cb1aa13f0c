'use strict';
// Python's float formatting, which decision reasons use ('%.3f', '%.6g'): exact ties round half to even.

const test = require('node:test');
const assert = require('node:assert');
const { formatFixed, formatGeneral, reprFloat } = require('../lib/pyformat');

test('formatFixed and formatGeneral match Python', () => {
  const cases = [[0.0625, '0.062', '0.0625'], [0.5, '0.500', '0.5'], [1e30, '1000000000000000019884624838656.000', '1e+30'],
    [0.00012345678, '0.000', '0.000123457'], [123456789, '123456789.000', '1.23457e+08'], [999999.5, '999999.500', '1e+06'],
    [0.9999995, '1.000', '1'], [1e-5, '0.000', '1e-05'], [3, '3.000', '3'], [0, '0.000', '0'], [-0.0015, '-0.002', '-0.0015']];
  for (const [x, fixed, general] of cases) {
    assert.strictEqual(formatFixed(x, 3), fixed, `${x}:.3f`);
    assert.strictEqual(formatGeneral(x, 6), general, `${x}:.6g`);
  }
  assert.deepStrictEqual([2.5e-5, 1e16, 0.1, 1e15 + 0.5].map(reprFloat), ['2.5e-05', '1e+16', '0.1', '1000000000000000.5']);
});
