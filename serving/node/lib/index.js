'use strict';
// tierroute-node: load a RouterBundle, route requests, check a conformance file.
//
//   const { Router } = require('tierroute-node');
//   const router = await Router.load('bundle/');              // never throws: a bad bundle -> the tree
//   const decision = await router.route({ prompt: 'Pull the order id.', output_schema: { order_id: 'string' } });

const { Router, FALLBACK_REASONS } = require('./router');
const { checkConformance } = require('./conformance');
const errors = require('./errors');

module.exports = { Router, FALLBACK_REASONS, checkConformance, ...errors };
