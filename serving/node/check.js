'use strict';
// Check this runtime against a bundle's conformance file, from the command line:
//   node check.js BUNDLE [CONFORMANCE.jsonl]
// Prints the record count and the first mismatches; exits 0 on a full match, 5 on any mismatch,
// 1 when the bundle or the file cannot be used (as `tierroute conformance` does for Python).

const { Router, checkConformance } = require('./lib');

async function main(argv) {
  const [bundle, file] = argv;
  if (!bundle) {
    console.error('usage: node check.js BUNDLE [CONFORMANCE.jsonl]');
    return 1;
  }
  let router;
  try {
    router = await Router.load(bundle, { deadlineMs: null }, { strict: true });
  } catch (err) {
    console.error(`error: cannot load the bundle ${JSON.stringify(bundle)}: ${err.message}`);
    return 1;
  }
  const report = await checkConformance(router, file);
  const decided = report.records - new Set(report.mismatches.filter((m) => m.field.startsWith('decision')).map((m) => m.i)).size;
  console.log(JSON.stringify({ bundle_id: router.bundleId, records: report.records, mismatches: report.mismatches.length,
    decisions_identical: decided, first: report.mismatches.slice(0, 5) }));
  return report.ok ? 0 : 5;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});
