"""``tierroute benchmark``: ask every candidate every prompt, score, cost and time each answer.

The learned router is only as good as its outcomes; this job makes them from your own prompts
(the article's "A/B test Tier 1 vs frontier on your actual data"). For every prompt x candidate
(or a sampled share of the candidates per prompt) it sends the prompt to the candidate's
OpenAI-compatible endpoint (``base_url`` + the key in ``api_key_env``, from the catalogue), scores
the answer against the prompt's reference (:mod:`~tierroute.pipelines.benchmark.scorers.text`), prices it with the
response's token usage x the catalogue's prices and records the measured latency. The output is
the canonical outcome JSONL, ready for ``tierroute ingest`` / ``tierroute train --data``.

- **Failures are outcomes**: a call that fails after its retries, or answers with something that
  is not a completion, is a row with ``quality`` 0, ``correct`` false and ``error_kind`` /
  ``error`` set; the run goes on. An attempt the provider may have billed without an answer (a
  timeout, a connection broken mid-exchange, an unreadable 2xx body) is booked at its reserved
  worst case (``cost_source = "reserved_worst_case"``), never at $0.
- **Cache** (:mod:`~tierroute.pipelines.benchmark.callcache`): a rerun never pays again for a call already
  answered; failures are tried again.
- **Budget**: before each new call, its worst-case cost (the prompt's o200k token count + 10% and 8
  tokens per message at the input price, ``max_tokens`` at the output price) is reserved; once
  spent + reserved + that would pass ``budget_usd``, no new call is made (cached answers are still
  used), and no call in flight tries again after an attempt booked at its worst case. The run then
  finishes what is in flight, writes every outcome it has and reports ``stopped_by_budget``; a
  rerun with a higher budget continues from the cache.
- **Missing usage**: the answer is scored as usual; its cost is estimated from o200k_base token
  counts of the prompt and the answer, and the row says ``cost_source = "estimated:o200k_base"``.
- **The out file is never overwritten**: an existing ``out`` is refused before any call. Rerun with
  a new ``--out``; the cache makes that rerun free for everything already paid.

Extra columns beside the canonical ones (ingest ignores them): scorer, threshold, error_kind,
error, response (the answer text, for audits), score_detail, input_tokens, output_tokens,
cost_source, cached, attempts, judge_model, judge_cost_usd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tierroute._params import check_fraction, check_int, check_number
from tierroute.errors import ConfigError, OutputDirError
from tierroute.pipelines.benchmark.runner import plan_pairs
from tierroute.pipelines.benchmark.scorers.registry import default_thresholds, scorer_names

__all__ = ["BenchmarkConfig", "BenchmarkResult", "run_benchmark", "arun_benchmark", "plan_pairs", "DEFAULT_CACHE"]

DEFAULT_CACHE = "runs/cache/benchmark.sqlite"
_OWNER = "BenchmarkConfig"


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark run. ``models``: the candidates to ask (default: every candidate of the
    catalogue); ``sample_fraction``: the share of them asked per prompt (a fixed draw per prompt,
    by ``seed``); ``concurrency``: calls in flight per candidate (``model_concurrency`` overrides it
    per model); ``budget_usd``: None for no cap; ``thresholds``: (scorer, Q) overrides of
    :func:`~tierroute.pipelines.benchmark.scorers.registry.default_thresholds`; ``max_bad_prompts``: bad lines of the
    prompts file tolerated (and skipped).

    >>> BenchmarkConfig("prompts.jsonl", "catalogue.toml", "outcomes.jsonl", thresholds={"f1": 0.8}).threshold_map()["f1"]
    0.8
    """

    prompts: str
    catalogue: str
    out: str
    models: tuple[str, ...] = ()
    sample_fraction: float = 1.0
    seed: int = 0
    concurrency: int = 4
    model_concurrency: tuple[tuple[str, int], ...] = ()
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    budget_usd: float | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    judge_model: str | None = None
    allow_code_execution: bool = False
    code_timeout_s: float = 10.0
    cache: str = DEFAULT_CACHE
    thresholds: tuple[tuple[str, float], ...] = ()
    max_bad_prompts: int = 0

    def __post_init__(self) -> None:
        for name in ("prompts", "catalogue", "out", "cache"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
                raise ConfigError(f"The {name!r} parameter of {_OWNER} must be a non-empty path. Got {value!r} instead.")
            object.__setattr__(self, name, os.fspath(value))
        if Path(self.out).resolve() in (Path(self.cache).resolve(), Path(self.prompts).resolve()):
            raise ConfigError(
                f"The 'out' parameter of {_OWNER} names the same file as the "
                f"{'cache' if Path(self.out).resolve() == Path(self.cache).resolve() else 'prompts'} "
                f"({self.out!r}); pass a new file for the outcomes."
            )
        object.__setattr__(self, "models", tuple(self.models))
        for name in ("model_concurrency", "thresholds"):
            pairs = getattr(self, name)
            pairs = tuple(pairs.items() if isinstance(pairs, Mapping) else pairs)
            if not all(isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
                raise ConfigError(
                    f"The {name!r} parameter of {_OWNER} must be a dict or (name, value) pairs. Got {getattr(self, name)!r} instead."
                )
            object.__setattr__(self, name, tuple((str(k), v) for k, v in pairs))
        check_fraction(self.sample_fraction, "sample_fraction", _OWNER)
        if self.sample_fraction == 0:
            raise ConfigError(f"The 'sample_fraction' parameter of {_OWNER} must be in (0, 1]. Got 0 instead.")
        check_int(self.seed, "seed", _OWNER)
        check_int(self.concurrency, "concurrency", _OWNER, 1, 1024)
        for model, n in self.model_concurrency:
            check_int(n, f"model_concurrency[{model!r}]", _OWNER, 1, 1024)
        check_number(self.timeout_s, "timeout_s", _OWNER, 0.001)
        check_int(self.max_retries, "max_retries", _OWNER, 0, 100)
        check_number(self.backoff_base_s, "backoff_base_s", _OWNER, 0.0)
        check_number(self.backoff_cap_s, "backoff_cap_s", _OWNER, 0.0)
        if self.budget_usd is not None:
            check_number(self.budget_usd, "budget_usd", _OWNER, 0.0)
        check_int(self.max_tokens, "max_tokens", _OWNER, 1)
        check_number(self.temperature, "temperature", _OWNER, 0.0, 2.0)
        check_number(self.code_timeout_s, "code_timeout_s", _OWNER, 0.1, 3600.0)
        check_int(self.max_bad_prompts, "max_bad_prompts", _OWNER, 0)
        for scorer, value in self.thresholds:
            if scorer not in scorer_names():
                raise ConfigError(
                    f"The 'thresholds' parameter of {_OWNER} names an unknown scorer {scorer!r}; "
                    f"the scorers are {', '.join(scorer_names())}."
                )
            check_fraction(value, f"thresholds[{scorer!r}]", _OWNER)
        if not isinstance(self.allow_code_execution, bool):
            raise ConfigError(
                f"The 'allow_code_execution' parameter of {_OWNER} must be a bool. Got {self.allow_code_execution!r} instead."
            )

    def threshold_map(self) -> dict[str, float]:
        """Every scorer's threshold for this run (defaults, then the overrides)."""
        return {**default_thresholds(), **{k: float(v) for k, v in self.thresholds}}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = list(self.models)
        data["model_concurrency"] = dict(self.model_concurrency)
        data["thresholds"] = dict(self.thresholds)
        return data


@dataclass(frozen=True)
class BenchmarkResult:
    """The outcome rows written (in prompt x catalogue order) and the run's summary."""

    out_path: Path
    rows: tuple[dict[str, Any], ...]
    summary: dict[str, Any]

    @property
    def stopped_by_budget(self) -> bool:
        return bool(self.summary["stopped_by_budget"])


def _check_out(path: Path) -> None:
    if path.exists():
        raise OutputDirError(
            f"Output file {str(path)!r} already exists; tierroute never writes over existing files. Pass a new "
            "--out path: the call cache holds every answer already paid for, so a rerun pays only for what is missing."
        )


def run_benchmark(config: BenchmarkConfig, progress: Any = None, env: Mapping[str, str] | None = None) -> BenchmarkResult:
    """Run the benchmark (see the module doc) and write ``config.out``. ``env`` holds the API keys
    named by the catalogue's ``api_key_env`` (default: the process environment). Every check that
    can fail (out file, catalogue, prompts, scorers allowed, judge, keys) runs before any call."""
    import asyncio

    return asyncio.run(arun_benchmark(config, progress, env))


async def arun_benchmark(config: BenchmarkConfig, progress: Any = None, env: Mapping[str, str] | None = None) -> BenchmarkResult:
    """:func:`run_benchmark` for callers already inside an event loop."""
    from tierroute.pipelines.benchmark.runner import execute, prepare

    try:
        import httpx  # noqa: F401 - checked here so a missing extra fails before anything else
    except ImportError:
        raise ConfigError(
            "tierroute benchmark needs httpx, which is not installed. Install it: pip install 'tierroute[train]' (or pip install httpx)."
        ) from None
    out = Path(config.out)
    _check_out(out)
    plan = prepare(config, os.environ if env is None else env)
    rows, summary = await execute(plan, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.open("x", encoding="utf-8") as fh:
            fh.writelines(plan.dumps(row) + "\n" for row in rows)
    except FileExistsError:
        _check_out(out)  # appeared while the run was going: refuse (the answers are in the cache)
    return BenchmarkResult(out, tuple(rows), {**summary, "out": str(out), "config": config.to_dict()})
