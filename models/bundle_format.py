"""The RouterBundle format's identity: its kind, schema version and content digest.

Written by :mod:`tierroute.models.export`, read by :mod:`tierroute.serving.bundle`; both take these
from here, so the two sides cannot drift apart. The language-neutral description of every file
lives in ``docs/bundle-format.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["BUNDLE_KIND", "BUNDLE_SCHEMA_VERSION", "PROVENANCE", "manifest_digest"]

BUNDLE_KIND = "tierroute.router_bundle"
#: bumped on any change an older runtime would misread; optional additions (the knob curve, a new
#: encoder kind an old runtime refuses by name) keep it
BUNDLE_SCHEMA_VERSION = 1

#: manifest keys that record provenance, not behaviour: left out of the digest (editable)
PROVENANCE = ("created", "versions", "metrics", "training", "reference", "bundle_id")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """16 hex digits over everything that decides: the files' sha256s and the rest of the manifest
    (calibration, cost model, policy, candidates, ...) but its provenance. It is the bundle id:
    the same router exported twice gets the same id; anything that changes a decision changes it."""
    content = {k: v for k, v in manifest.items() if k not in PROVENANCE}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
