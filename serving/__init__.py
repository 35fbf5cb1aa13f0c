"""The serving runtime: what services embed to route each LLM call.

Imports numpy, onnxruntime-side code and the tokenizer only: never torch, lightgbm, scikit-learn
or mlflow (tests check it). Importing opens no file and loads no model."""

from tierroute.request import Request, parse_request
from tierroute.serving.decision import DECISION_SCHEMA_VERSION, Decision, HeuristicPolicy

__all__ = ["Request", "parse_request", "Decision", "HeuristicPolicy", "DECISION_SCHEMA_VERSION"]
