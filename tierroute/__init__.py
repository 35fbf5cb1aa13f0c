"""tierroute: send each LLM request to the cheapest model tier likely to answer it correctly.

The subpackages map the project's top-level folders:

- ``tierroute.features``  (``features/``)  request signals and the FeatureSpec
- ``tierroute.models``    (``models/``)    the heuristic tree, candidate catalogues, learned routers
- ``tierroute.pipelines`` (``pipelines/``) outcome ingestion, audit, training and evaluation jobs
- ``tierroute.serving``   (``serving/``)   the light runtime services embed

Importing this package loads nothing heavy and touches no file.
"""

from tierroute.errors import TierrouteError
from tierroute.request import Request

__all__ = ["Request", "TierrouteError", "__version__"]
__version__ = "0.1.0"
