"""Request signals as numbers: token counts, output-schema shape, reasoning keywords and depth,
latency SLA and prompt shape; and the FeatureSpec that records how a vector was built.

Light on purpose (numpy and the BPE tokenizer only): serving imports it."""

from tierroute.features.keywords import REASONING_KEYWORDS, KeywordMatcher, reasoning_depth, reasoning_depth_array
from tierroute.features.shape import SHAPE_FEATURE_NAMES, PromptShape, prompt_shape
from tierroute.features.signals import RequestSignals, SignalConfig, SignalExtractor
from tierroute.features.spec import FEATURE_VERSION, FeatureSpec
from tierroute.features.tokens import ApproxTokenCounter, BpeTokenCounter, TokenCounter, make_token_counter
from tierroute.schema import SCHEMA_FEATURE_NAMES, SCHEMA_KINDS, SchemaSummary, summarize_schema

__all__ = [
    "REASONING_KEYWORDS",
    "KeywordMatcher",
    "reasoning_depth",
    "reasoning_depth_array",
    "SCHEMA_FEATURE_NAMES",
    "SCHEMA_KINDS",
    "SchemaSummary",
    "summarize_schema",
    "SHAPE_FEATURE_NAMES",
    "PromptShape",
    "prompt_shape",
    "RequestSignals",
    "SignalConfig",
    "SignalExtractor",
    "FEATURE_VERSION",
    "FeatureSpec",
    "ApproxTokenCounter",
    "BpeTokenCounter",
    "TokenCounter",
    "make_token_counter",
]
