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

__all__ = ["BUNDLE_KIND", "BUNDLE_SCHEMA_VERSION", "BUNDLE_SCHEMA_VERSIONS", "PROVENANCE", "manifest_digest", "schema_version_for"]

BUNDLE_KIND = "tierroute.router_bundle"
#: bumped on any change an older runtime would misread; optional additions (the knob curve, a new
#: encoder kind an old runtime refuses by name) keep it. A bundle is written with the lowest version
#: that holds its meaning (:func:`schema_version_for`), so older runtimes keep serving what they can
BUNDLE_SCHEMA_VERSION = 1
#: the versions this release reads; 2: the fixed policy may be the knob curve's anchor
BUNDLE_SCHEMA_VERSIONS = (1, 2)

#: manifest keys that record provenance, not behaviour: left out of the digest (editable)
PROVENANCE = ("created", "versions", "metrics", "training", "reference", "bundle_id")


def schema_version_for(policy: Mapping[str, Any], curve: Mapping[str, Any] | None) -> int:
    """1, unless the bundle's fixed ``policy`` is not of its knob ``curve``'s kind and frontier (it
    is the curve's anchor: every request to one candidate): 2. A runtime from before anchors applies
    the curve's knobs to the fixed policy's kind when an objective is named; it refuses version 2
    (and serves the tree) rather than route by knobs read as another policy's."""
    if curve is None or curve.get("kind") is None:
        return 1
    same = policy.get("kind") == curve["kind"] and policy.get("frontier") == curve.get("frontier")
    return 1 if same else 2


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """16 hex digits over everything that decides: the files' sha256s and the rest of the manifest
    (calibration, cost model, policy, candidates, ...) but its provenance. It is the bundle id:
    the same router exported twice gets the same id; anything that changes a decision changes it."""
    content = {k: v for k, v in manifest.items() if k not in PROVENANCE}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
