"""The scorer registry: every module of this package that declares ``SCORER_SPECS`` (a tuple of
:class:`~tierroute.pipelines.benchmark.scorers.base.ScorerSpec`) contributes its scorers, so a new
scorer is one new file in ``pipelines/benchmark/scorers/``.

>>> scorer_names()
('exact', 'choice', 'numeric', 'f1', 'json', 'code', 'judge')
>>> score_text("f1", "The order id is A-1234.", check_reference("f1", "order id A-1234")).quality
0.8571428571428571
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tierroute.pipelines.benchmark.scorers.base import SCORER_RUNS, Score, ScorerSpec

__all__ = ["scorer_specs", "scorer_names", "default_thresholds", "check_reference", "score_text"]

_PACKAGE = "tierroute.pipelines.benchmark.scorers"
_NOT_SCORERS = frozenset({"base", "registry"})


def scorer_specs() -> Mapping[str, ScorerSpec]:
    """Every scorer by name, in ``rank`` order (imports the package's modules; cheap after the first call)."""
    package = importlib.import_module(_PACKAGE)
    found: dict[str, ScorerSpec] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _NOT_SCORERS:
            continue
        for spec in getattr(importlib.import_module(f"{_PACKAGE}.{info.name}"), "SCORER_SPECS", ()):
            if spec.name in found:
                raise RuntimeError(f"Two scorer modules declare the scorer {spec.name!r}; rename one.")
            if spec.runs not in SCORER_RUNS or (spec.runs == "offline") != (spec.score is not None):
                raise RuntimeError(
                    f"The scorer {spec.name!r} must run in one of {SCORER_RUNS} and have a score function exactly when it runs offline."
                )
            found[spec.name] = spec
    return MappingProxyType(dict(sorted(found.items(), key=lambda item: (item[1].rank, item[0]))))


def scorer_names() -> tuple[str, ...]:
    return tuple(scorer_specs())


def default_thresholds() -> Mapping[str, float]:
    """correct = quality >= threshold, per scorer (a run may override them with ``--threshold scorer=Q``)."""
    return MappingProxyType({name: spec.threshold for name, spec in scorer_specs().items()})


def _spec(scorer: str) -> ScorerSpec:
    specs = scorer_specs()
    if scorer not in specs:
        raise ValueError(f"'scorer' must be one of {', '.join(specs)}")
    return specs[scorer]


def check_reference(scorer: str, reference: Any, output_schema: Any = None) -> Any:
    """The reference normalised for ``scorer``; ValueError (what is expected) when it cannot serve.
    Used when the prompts file is read, so that a bad reference fails before any call is paid."""
    return _spec(scorer).check(reference, output_schema)


def score_text(scorer: str, response: str, reference: Any, output_schema: Any = None) -> Score:
    """Score with an offline scorer; ``reference`` as returned by :func:`check_reference`. The
    subprocess (code) and model (judge) scorers run through the benchmark runner."""
    spec = _spec(scorer)
    if spec.score is None:
        offline = [name for name, s in scorer_specs().items() if s.score is not None]
        raise ValueError(
            f"score_text handles {', '.join(offline)}; got {scorer!r}, which runs as a {spec.runs} through the benchmark runner"
        )
    return spec.score(response, reference, output_schema)
