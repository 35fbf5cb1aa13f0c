'use strict';
// The error kinds of the Python runtime (tierroute/errors.py), by name.

class TierrouteError extends Error {
  constructor(message) { super(message); this.name = this.constructor.name; }
}
class RequestError extends TierrouteError {}
class FeatureError extends TierrouteError {}
class ConfigError extends TierrouteError {}
/** A bundle that cannot be served; ``code`` is the fallback reason decisions report. */
class BundleError extends TierrouteError {
  constructor(code, message) { super(message); this.code = code; }
}

module.exports = { TierrouteError, RequestError, FeatureError, ConfigError, BundleError };
