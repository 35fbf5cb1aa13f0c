"""The serving runtime: what services embed to route each LLM call.

    from tierroute.serving import Router, Request
    router = Router.load("bundle/")            # or "models:/tierroute@champion"
    router.route(Request(prompt="...", output_schema={...}, latency_sla_ms=300))

Imports numpy, onnxruntime-side code and the tokenizers only: never torch, lightgbm, scikit-learn
or mlflow (tests check it; an MLflow URI imports mlflow lazily). Importing opens no file and
loads no model."""

from tierroute.request import Request, parse_request
from tierroute.serving.bundle import BundleError
from tierroute.serving.decision import DECISION_SCHEMA_VERSION, Decision, HeuristicPolicy
from tierroute.serving.router import FALLBACK_REASONS, Router, RouterConfig

__all__ = [
    "Request",
    "parse_request",
    "Decision",
    "HeuristicPolicy",
    "DECISION_SCHEMA_VERSION",
    "Router",
    "RouterConfig",
    "BundleError",
    "FALLBACK_REASONS",
]
