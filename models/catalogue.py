"""Candidate catalogues: which models a router may pick, their tier, and what they cost.

A catalogue is kept apart from any trained router, so repricing a model or changing a tier's
default needs no retraining. It is a small TOML file; three ship with tierroute:

- ``article``: the routing article's three tiers, priced at its per-request figures;
- ``routerbench``: the 11 RouterBench models, at the list prices behind the data's costs;
- ``routellm``: RouteLLM's strong/weak pair (GPT-4-1106-preview, Mixtral 8x7B Instruct).

>>> cat = load_catalogue("article")
>>> cat.default_model("tier3"), cat.tier_rank("tier3")
('gpt-4o', 2)
>>> round(cat.candidate("gpt-4o").cost(600, 100), 4)
0.12

The file holds ``schema_version = 1``, ``name``, an optional ``description``, ``tiers`` (cheapest
first) and one ``[[candidates]]`` table per model: ``model``, ``tier``, ``input_per_1k`` and
``output_per_1k`` (USD per 1k tokens), and optionally ``p95_latency_ms`` (absent = unknown),
``default`` (at most one per tier) and ``base_url`` / ``api_key_env`` (an OpenAI-compatible endpoint
and the variable holding its key). The builtin files in ``tierroute/catalogues/`` are examples.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from tierroute.errors import CatalogueError, describe

__all__ = [
    "SCHEMA_VERSION",
    "BUILTIN_CATALOGUES",
    "Candidate",
    "Catalogue",
    "load_catalogue",
    "builtin_catalogue",
    "find_builtin_for",
    "catalogue_from_costs",
]

SCHEMA_VERSION = 1
BUILTIN_CATALOGUES: tuple[str, ...] = ("article", "routerbench", "routellm")

_TOP_KEYS = ("schema_version", "name", "description", "tiers", "candidates", "source")
_FIELDS = ("model", "tier", "input_per_1k", "output_per_1k", "p95_latency_ms", "default", "base_url", "api_key_env")
_UNITS = {"input_per_1k": "USD per 1k input tokens", "output_per_1k": "USD per 1k output tokens"}
_TIERS_EXAMPLE = 'tiers = ["tier1", "tier2", "tier3"] (cheapest first)'


def _bad(where: str, expected: str, got: str, fix: str) -> CatalogueError:
    """One wording for every check: where, what was expected, what arrived, what to do."""
    return CatalogueError(f"{where}: {expected}; got {got}. {fix}")


def _got(raw: Mapping[str, Any], key: str) -> str:
    return describe(raw[key]) if key in raw else "nothing (the key is missing)"


def _checked(where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one candidate's fields; return them normalised (floats; None when absent)."""
    out: dict[str, Any] = {}
    for key in ("model", "tier"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _bad(where, f"{key!r} must be a non-empty string", _got(raw, key), f'Add {key} = "...".')
        out[key] = value
    for key in ("input_per_1k", "output_per_1k", "p95_latency_ms"):
        value = raw.get(key)
        if value is None and key == "p95_latency_ms":
            out[key] = None  # unknown latency
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            expected = f"{key!r} must be a finite number >= 0 ({_UNITS.get(key, 'milliseconds')})"
            raise _bad(where, expected, _got(raw, key), f"Set {key} = <number>.")
        out[key] = float(value)
    out["default"] = raw.get("default", False)
    if not isinstance(out["default"], bool):
        raise _bad(where, "'default' must be true or false", describe(out["default"]), "Write true or omit it.")
    for key in ("base_url", "api_key_env"):
        value = out[key] = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _bad(where, f"{key!r} must be a non-empty string when given", describe(value), "Fix or remove it.")
    return out


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model a router may choose, with its tier and prices (USD per 1k tokens).

    >>> Candidate("gpt-4o-mini", "tier2", 0.01, 0.04).cost(600, 100)
    0.01
    """

    model: str
    tier: str
    input_per_1k: float
    output_per_1k: float
    p95_latency_ms: float | None = None
    default: bool = False
    base_url: str | None = None
    api_key_env: str | None = None

    def __post_init__(self) -> None:
        values = _checked(f"candidate {self.model!r}", {f: getattr(self, f) for f in _FIELDS})
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for one call with these token counts."""
        if input_tokens < 0 or output_tokens < 0:
            got = f"input_tokens={input_tokens!r}, output_tokens={output_tokens!r}"
            raise _bad(f"cost of {self.model!r}", "token counts must be >= 0", got, "Pass the counts of one call.")
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000.0


@dataclass(frozen=True)
class Catalogue:
    """The candidates of one deployment, grouped in tiers ordered cheapest first.

    >>> cat = Catalogue("tiny", ("tier1", "tier2"), (Candidate("small", "tier1", 0.001, 0.002),))
    >>> cat.tier_of("small"), cat.missing(["small", "big"])
    ('tier1', ['big'])
    """

    name: str
    tiers: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    description: str = ""
    source: str = ""
    _index: dict[str, Candidate] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"catalogue {self.source}" if self.source else f"catalogue {self.name!r}"
        name, tiers, candidates = self.name, self.tiers, self.candidates
        if not isinstance(name, str) or not name.strip():
            raise _bad(where, "'name' must be a non-empty string", describe(name), 'Add name = "..." at the top.')
        if not isinstance(self.description, str):
            raise _bad(where, "'description' must be a string", describe(self.description), "Quote it.")
        if not isinstance(tiers, (list, tuple)) or not tiers:
            raise _bad(where, "'tiers' must be a non-empty list of names", describe(tiers), f"Write {_TIERS_EXAMPLE}.")
        for tier in tiers:
            if not isinstance(tier, str) or not tier.strip():
                raise _bad(where, "every tier must be a non-empty string", describe(tier), f"Write {_TIERS_EXAMPLE}.")
            if tiers.count(tier) > 1:
                got = f"{tier!r} {tiers.count(tier)} times"
                raise _bad(where, "each tier must appear once in 'tiers'", got, "Remove the repeat.")
        if not isinstance(candidates, (list, tuple)) or not candidates:
            raise _bad(where, "a catalogue needs candidates", describe(candidates), "Add a [[candidates]] entry.")
        index: dict[str, Candidate] = {}
        seen: dict[str, int] = {}
        defaults: dict[str, int] = {}
        for i, cand in enumerate(candidates):
            if not isinstance(cand, Candidate):
                raise _bad(where, f"candidates[{i}] must be a Candidate", describe(cand), "Use Candidate(...).")
            at = f"{where}: candidates[{i}] (model {cand.model!r})"
            if cand.tier not in tiers:
                known = ", ".join(tiers)
                raise _bad(at, f"tier must be one of 'tiers' ({known})", repr(cand.tier), "Fix it or add it there.")
            if cand.model in seen:
                got = f"a second entry for it (the first is candidates[{seen[cand.model]}])"
                raise _bad(at, "model ids must be unique", got, "Remove or rename one of them.")
            if cand.default and cand.tier in defaults:
                j = defaults[cand.tier]
                got = f"a second default for {cand.tier!r} (the first is candidates[{j}] {candidates[j].model!r})"
                raise _bad(at, "at most one default = true per tier", got, "Keep default = true on one of them.")
            if cand.default:
                defaults[cand.tier] = i
            index[cand.model], seen[cand.model] = cand, i
        object.__setattr__(self, "tiers", tuple(tiers))
        object.__setattr__(self, "candidates", tuple(candidates))
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> Catalogue:
        """Build from the parsed TOML layout (or :meth:`to_dict`'s output), validating everything."""
        if not isinstance(data, Mapping):
            raise _bad(f"catalogue {source}", "expected a table of catalogue keys", describe(data), "Pass a dict.")
        src = source if source is not None else str(data.get("source") or "dict")
        where = f"catalogue {src}"
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            expected = f"top-level keys are {', '.join(_TOP_KEYS)}"
            raise _bad(where, expected, f"unknown key {unknown[0]!r}", "Check its spelling or remove it.")
        version = data.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:
            fix = f"Put schema_version = {SCHEMA_VERSION} at the top (this tierroute reads version {SCHEMA_VERSION})."
            raise _bad(where, f"schema_version must be {SCHEMA_VERSION}", _got(data, "schema_version"), fix)
        for key, fix in (("name", 'Add name = "..." at the top.'), ("tiers", f"Add {_TIERS_EXAMPLE}.")):
            if key not in data:
                raise _bad(where, f"{key!r} is required", "nothing (the key is missing)", fix)
        raw_candidates = data.get("candidates")
        if not isinstance(raw_candidates, list) or not raw_candidates:
            expected = "'candidates' must be a non-empty array of [[candidates]] tables"
            raise _bad(where, expected, _got(data, "candidates"), "Add a [[candidates]] entry per model.")
        candidates = []
        for i, raw in enumerate(raw_candidates):
            if not isinstance(raw, Mapping):
                raise _bad(where, f"candidates[{i}] must be a table", describe(raw), "Write it as [[candidates]].")
            model = raw.get("model")
            at = f"{where}: candidates[{i}]" + (f" (model {model!r})" if isinstance(model, str) else "")
            extra = sorted(set(raw) - set(_FIELDS))
            if extra:
                expected = f"candidate keys are {', '.join(_FIELDS)}"
                raise _bad(at, expected, f"unknown key {extra[0]!r}", "Check its spelling or remove it.")
            candidates.append(Candidate(**_checked(at, raw)))
        name, tiers, description = data.get("name"), data.get("tiers"), data.get("description", "")
        return cls(name, tiers, tuple(candidates), description, src)  # type: ignore[arg-type]

    def candidate(self, model: str) -> Candidate:
        """The candidate named ``model``; CatalogueError (listing the known ones) if absent."""
        try:
            return self._index[model]
        except (KeyError, TypeError):
            known = ", ".join(self._index)
            fix = "Use one of those names or add a [[candidates]] entry for it."
            raise CatalogueError(f"unknown model {model!r}; catalogue {self.name!r} has {known}. {fix}") from None

    def tier_of(self, model: str) -> str:
        """The tier ``model`` belongs to."""
        return self.candidate(model).tier

    def tier_rank(self, tier: str) -> int:
        """Position of ``tier`` in the cheapest-first order (0 = cheapest)."""
        try:
            return self.tiers.index(tier)
        except ValueError:
            raise CatalogueError(
                f"unknown tier {tier!r}; this catalogue has {', '.join(self.tiers)}. Use one of those (catalogue {self.name!r})."
            ) from None

    def models_in_tier(self, tier: str) -> tuple[Candidate, ...]:
        """The candidates of ``tier``, cheapest first (by input + output price, then name)."""
        self.tier_rank(tier)  # raises on an unknown tier
        members = (c for c in self.candidates if c.tier == tier)
        return tuple(sorted(members, key=lambda c: (c.input_per_1k + c.output_per_1k, c.model)))

    def default_model(self, tier: str) -> str:
        """The tier's model for tier-level policies: the one marked default, else the cheapest."""
        members = self.models_in_tier(tier)
        if not members:
            fix = f'add a [[candidates]] entry with tier = "{tier}" or route to another tier'
            raise CatalogueError(f"tier {tier!r} of catalogue {self.name!r} has no candidates; {fix}.")
        return next((c.model for c in members if c.default), members[0].model)

    def serving_model(self, tier: str) -> str:
        """The model that serves a tier-level decision: the tier's default model, or, for a tier
        with no candidate, the nearest tier above it that has one (never a weaker model than asked
        for), else the nearest below."""
        rank = self.tier_rank(tier)
        order = [*self.tiers[rank:], *reversed(self.tiers[:rank])]
        for candidate_tier in order:
            if self.models_in_tier(candidate_tier):
                return self.default_model(candidate_tier)
        raise CatalogueError(f"catalogue {self.name!r} has no candidates at all; add [[candidates]] entries.")

    def covers(self, models: Iterable[str]) -> bool:
        """True when every model named is in this catalogue."""
        return not self.missing(models)

    def missing(self, models: Iterable[str]) -> list[str]:
        """The models named that this catalogue lacks, in first-seen order, without repeats."""
        return list(dict.fromkeys(m for m in models if m not in self._index))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (for logs and manifests); :meth:`from_dict` reads it back."""
        head = {"schema_version": SCHEMA_VERSION, "name": self.name, "description": self.description}
        tail = {"source": self.source, "tiers": list(self.tiers), "candidates": [asdict(c) for c in self.candidates]}
        return head | tail

    def to_toml(self) -> str:
        """The catalogue as a TOML file :func:`load_catalogue` reads back (unset optional fields are
        left out), e.g. a builtin with ``base_url``s added for a proxy."""
        lines = [f"schema_version = {SCHEMA_VERSION}", f"name = {_toml_value(self.name)}"]
        lines += [f"description = {_toml_value(self.description)}"] if self.description else []
        lines.append(f"tiers = {_toml_value(list(self.tiers))}")
        for c in self.candidates:
            values = {f: getattr(c, f) for f in _FIELDS}
            lines += ["", "[[candidates]]", *(f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None)]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """A TOML value for a catalogue field: JSON's string escapes and number forms are TOML's too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return json.dumps(value)


def _parse_toml(text: str, source: str) -> Catalogue:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        layout = "the builtin files in tierroute/catalogues/ show the layout"
        raise CatalogueError(f"catalogue {source} is not valid TOML: {exc}. Fix the syntax; {layout}.") from None
    return Catalogue.from_dict(data, source=source)


@lru_cache(maxsize=None)
def builtin_catalogue(name: str) -> Catalogue:
    """One of the catalogues shipped in ``tierroute/catalogues/`` (see BUILTIN_CATALOGUES)."""
    if name not in BUILTIN_CATALOGUES:
        known = ", ".join(BUILTIN_CATALOGUES)
        raise CatalogueError(f"no builtin catalogue {name!r}; the builtins are {known}. Pass one or a .toml path.")
    text = (resources.files("tierroute") / "catalogues" / f"{name}.toml").read_text(encoding="utf-8")
    return _parse_toml(text, f"builtin:{name}")


def load_catalogue(name_or_path: str | os.PathLike[str]) -> Catalogue:
    """A builtin catalogue by name, or a TOML file by path (``./article`` for a file so named)."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_CATALOGUES:
        return builtin_catalogue(name_or_path)
    path = os.fspath(name_or_path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        fix = f"Pass an existing .toml path or a builtin catalogue name: {', '.join(BUILTIN_CATALOGUES)}."
        raise CatalogueError(f"catalogue file {path!r} not found. {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"catalogue file {path!r} could not be read as text ({exc}). Pass a .toml file.") from None
    return _parse_toml(text, path)


def find_builtin_for(models: Iterable[str]) -> Catalogue | None:
    """The first builtin catalogue holding every model named, else None (also for no models)."""
    wanted = list(models)
    found = (c for c in map(builtin_catalogue, BUILTIN_CATALOGUES) if c.covers(wanted))
    return next(found, None) if wanted else None


def catalogue_from_costs(
    cost_per_call: Mapping[str, float],
    accuracy: Mapping[str, float],
    prompt_tokens: float,
    output_tokens: int = 256,
    name: str = "from-data",
) -> Catalogue:
    """A catalogue for models no built-in lists, read off their outcomes: tiers by mean cost per
    call (the cheapest third tier1, the middle tier2, the dearest tier3; of two models, tier1 and
    tier3), each tier's default its most accurate model, and one price per 1k tokens (input and
    output alike) that gives each model's mean cost for a call with the mean prompt
    (``prompt_tokens``) and ``output_tokens``.

    >>> cat = catalogue_from_costs({"small": 0.001, "big": 0.02}, {"small": 0.7, "big": 0.9}, 244.0)
    >>> cat.tier_of("small"), cat.tier_of("big"), round(cat.candidate("big").cost(244, 256), 6)
    ('tier1', 'tier3', 0.02)
    """
    models = list(cost_per_call)
    bad = {m: c for m, c in cost_per_call.items() if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0)}
    if not models or bad or not (math.isfinite(prompt_tokens) and prompt_tokens >= 0) or output_tokens < 0:
        raise CatalogueError(
            f"A catalogue read off the data needs a finite cost >= 0 per call for each model and token counts >= 0; got "
            f"costs {describe(dict(cost_per_call))}, prompt tokens {prompt_tokens!r}, output tokens {output_tokens!r}. "
            "Give every outcome row its cost_usd, or pass --catalogue FILE."
        )
    order = sorted(models, key=lambda m: (cost_per_call[m], accuracy.get(m, 0.0), m))
    tiers = ("tier1", "tier2", "tier3")
    rank = {m: (0 if i == 0 else 2) if len(order) == 2 else min(2, 3 * i // len(order)) for i, m in enumerate(order)}
    best = {t: max((m for m in order if rank[m] == k), key=lambda m: accuracy.get(m, 0.0), default=None) for k, t in enumerate(tiers)}
    per_1k = {m: 1000.0 * cost_per_call[m] / (prompt_tokens + output_tokens) if prompt_tokens + output_tokens else 0.0 for m in order}
    candidates = tuple(Candidate(m, tiers[rank[m]], per_1k[m], per_1k[m], default=best[tiers[rank[m]]] == m) for m in order)
    description = (
        f"read off the outcomes: tiers by mean cost per call, prices that give each model's mean cost for a "
        f"{prompt_tokens:.0f}-token prompt and {output_tokens} output tokens; no latency data"
    )
    return Catalogue(name, tiers, candidates, description)
