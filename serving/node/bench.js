'use strict';
// route() latency of the Node runtime beside the tree's, one request at a time:
//   node bench.js BUNDLE [--n 2000]
// prints p50/p99 in microseconds per prompt size, and learned / tree as ratios.

const { performance } = require('perf_hooks');
const { Router } = require('./lib');

const SIZES = { short: 1, medium: 14, long: 70 }; // repeats of a ~18-token sentence: ~20 / ~250 / ~1,250 o200k tokens
const SENTENCE = 'Compare the two vendor proposals and explain why one is cheaper over three years, with totals. ';

function quantile(sorted, q) { return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]; }

async function timeRoute(router, request, n) {
  for (let i = 0; i < Math.min(200, n); i++) await router.route(request); // warm-up
  const times = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await router.route(request);
    times.push((performance.now() - start) * 1000);
  }
  times.sort((a, b) => a - b);
  return [quantile(times, 0.5), quantile(times, 0.99)];
}

async function main() {
  const dir = process.argv[2];
  const n = process.argv.includes('--n') ? Number(process.argv[process.argv.indexOf('--n') + 1]) : 2000;
  if (!dir) { console.error('usage: node bench.js BUNDLE [--n 2000]'); process.exit(1); }
  const learned = await Router.load(dir, { deadlineMs: null }, { strict: true });
  const tree = await Router.load(null);
  console.log(`bundle ${learned.bundleId} (${learned.bundle.kind}, encoder ${learned.bundle.encoder ? learned.bundle.encoder.id : 'none'}), ${n} calls each`);
  console.log('size     tokens  learned p50/p99 us   tree p50/p99 us   ratio p50/p99');
  for (const [name, repeat] of Object.entries(SIZES)) {
    const request = { prompt: SENTENCE.repeat(repeat), output_schema: { answer: 'string' }, latency_sla_ms: 2000 };
    const tokens = (await tree.route(request)).signals.token_count;
    const [lp50, lp99] = await timeRoute(learned, request, n);
    const [tp50, tp99] = await timeRoute(tree, request, n);
    console.log(`${name.padEnd(8)} ${String(tokens).padStart(6)}  ${lp50.toFixed(0).padStart(7)} / ${lp99.toFixed(0).padEnd(8)}  `
      + `${tp50.toFixed(0).padStart(6)} / ${tp99.toFixed(0).padEnd(7)}  ${(lp50 / tp50).toFixed(2)}x / ${(lp99 / tp99).toFixed(2)}x`);
  }
}

main().catch((exc) => { console.error(exc); process.exit(1); });
