"""Moved to :mod:`tierroute.pipelines.training.tracking`. Kept because MLflow models logged by earlier
releases pickle ``tierroute.pipelines.tracking.RouterPyfunc`` by this import path."""

from tierroute.pipelines.training.tracking import *  # noqa: F403
from tierroute.pipelines.training.tracking import RouterPyfunc, __all__  # noqa: F401
