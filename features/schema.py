"""Moved to :mod:`tierroute.schema` (the request layer validates schemas, and the core may not
import features); this alias keeps ``tierroute.features.schema`` imports working."""

from __future__ import annotations

from tierroute.schema import *  # noqa: F403
from tierroute.schema import __all__  # noqa: F401
