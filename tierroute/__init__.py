"""tierroute: send each LLM request to the cheapest model tier likely to answer it correctly.

The subpackages map the project's top-level folders:

- ``tierroute.features``  (``features/``)  request signals and the FeatureSpec
- ``tierroute.models``    (``models/``)    the heuristic tree, candidate catalogues, learned routers
- ``tierroute.pipelines`` (``pipelines/``) outcome ingestion, audit, training and evaluation jobs
- ``tierroute.serving``   (``serving/``)   the light runtime services embed

Importing this package loads nothing heavy and touches no file.
"""

import os as _os
import sys as _sys


def _map_checkout_folders() -> None:
    """In a source checkout that is not installed, let ``tierroute.features`` etc. resolve to the
    top-level folders, as pyproject's package-dir does for installs (so ``python3 -c "import
    tierroute.serving"`` works from the repository root). Installed packages have no such sibling
    folders, and an editable install maps them itself."""
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    folders = ("features", "models", "pipelines", "serving")
    if not all(_os.path.isfile(_os.path.join(root, name, "__init__.py")) for name in folders):
        return
    if any(str(getattr(f, "__module__", "")).startswith("__editable___tierroute") for f in _sys.meta_path):
        return
    if root not in __path__:
        __path__.append(root)


_map_checkout_folders()

from tierroute.errors import TierrouteError  # noqa: E402
from tierroute.request import Request  # noqa: E402

__all__ = ["Request", "TierrouteError", "__version__"]
__version__ = "0.1.0"
