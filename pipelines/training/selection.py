"""Choose the router family by the user's own training data: each family of a pool is cross-fitted
on the *training* requests only and judged by its out-of-fold AIQ (the knob swept over out-of-fold
P(correct); bootstrap 95% interval over requests); the held-out evaluation never decides anything.

    selection = select_family(train, catalogue, SelectConfig(), "runs/cache")  # .chosen, .table

- Pool: :data:`POOL` ({pooled, per_candidate} x {none, static 64, static 256, MiniLM}, kNN and
  low-rank); pinning a kind (or an encoder) searches only the other (:func:`default_pool`).
- Budget (``budget_min``: selection + the chosen family's refit; None: :func:`auto_budget_min`):
  families run cheapest first; each one's fit time is estimated from those already run (same kind,
  else the median, scaled by width); one that would overrun (its refit or the leader's included)
  is "skipped (budget)"; the first always runs. MiniLM embeddings are computed in chunks within
  the budget; a static distillation is not budgeted (it is cached).
- Size: up to ``full_cells`` requests x candidates every family is fitted on all training requests
  with the final parameters, so the chosen router *is* the final model; above, on a stratified
  subsample with fewer folds and a faster learning rate, and the chosen family is refit on all.
- Ties: within ``epsilon`` OOF AIQ of the best, or within ``tie_cap`` with a paired bootstrap
  interval of the gap including 0; they go to the cheaper to serve, a deterministic order
  estimated from encoder and kind (:meth:`FamilySpec.serve_rank`); measured us/decision reported.
- A family whose encoder or kind cannot be served from a bundle is never chosen (:func:`bundleable`).

The budget is wall-clock time: pin ``kind`` and ``encoder`` (or raise it) for bit-reproducible runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError, TierrouteError
from tierroute.models.learned import LearnedConfig, LearnedRouter
from tierroute.models.router import ROUTER_KINDS, RouterParams
from tierroute.pipelines.training.pool import POOL, FamilySpec, bundleable, default_pool, family_config, kind_supported

__all__ = [
    "POOL",
    "EncoderSet",
    "FamilyResult",
    "FamilySpec",
    "SelectConfig",
    "Selection",
    "auto_budget_min",
    "bundleable",
    "default_pool",
    "family_config",
    "kind_supported",
    "select_family",
    "selection_markdown",
]


@dataclass(frozen=True)
class SelectConfig:
    """How the family is chosen (see the module docstring)."""

    budget_min: float | None = None  # None: auto_budget_min(requests, candidates)
    epsilon: float = 0.005  # OOF AIQ gaps up to this always tie
    tie_cap: float = 0.01  # gaps up to this tie when the paired bootstrap interval includes 0
    n_boot: int = 200
    full_cells: int = 40_000  # requests x candidates fitted in full; above, a subsample of this size
    fast_folds: int = 3  # subsample mode: folds, learning rate and tree cap of the selection fits
    fast_learning_rate: float = 0.08
    fast_estimators: int = 300
    timing_requests: int = 200  # serve timing: up to this many single-request calls ...
    timing_seconds: float = 1.0  # ... or this long (at least 10 calls)
    seed: int = 0
    pool: tuple[FamilySpec, ...] = ()  # empty: default_pool()
    require_bundleable: bool = True

    def __post_init__(self) -> None:
        for name in ("budget_min", "epsilon", "tie_cap", "timing_seconds")[self.budget_min is None :]:
            check_number(getattr(self, name), name, "SelectConfig", 0.0)
        for name, low in (("n_boot", 10), ("full_cells", 100), ("fast_folds", 2), ("timing_requests", 1)):
            check_int(getattr(self, name), name, "SelectConfig", low)
        object.__setattr__(self, "pool", tuple(self.pool))


@dataclass
class FamilyResult:
    """One row of the selection table."""

    family: FamilySpec
    status: str  # "ok", "skipped (budget)", "not bundleable", "failed: ..."
    aiq: float | None = None
    aiq_low: float | None = None
    aiq_high: float | None = None
    fit_seconds: float | None = None
    refit_seconds: float | None = None  # projected refit on all training requests (0: the fit is the model)
    encoder_seconds: float = 0.0
    serve_us: float | None = None
    bundleable: bool | None = None
    chosen: bool = False
    router: Any = field(default=None, repr=False)
    boot: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = {
            **self.family.to_dict(),
            "status": self.status,
            "oof_aiq": self.aiq,
            "oof_aiq_low": self.aiq_low,
            "oof_aiq_high": self.aiq_high,
            "fit_seconds": self.fit_seconds,
            "refit_seconds_projected": self.refit_seconds,
            "encoder_seconds": self.encoder_seconds,
            "serve_us": self.serve_us,
            "bundleable": self.bundleable,
            "chosen": self.chosen,
        }
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


@dataclass
class Selection:
    """The table, the chosen family, and what the final training reuses: ``router`` (the chosen
    family fitted on all training requests, final parameters; None in subsample mode), ``encoders``."""

    table: list[FamilyResult]
    chosen: FamilySpec
    mode: str
    request_ids: tuple[str, ...]
    seconds: float
    config: SelectConfig
    budget_min: float
    router: Any = None
    encoders: dict[tuple[str, int | None], Any] = field(default_factory=dict, repr=False)

    encoder = property(lambda self: self.encoders.get((self.chosen.encoder, self.chosen.dims)), doc="the chosen family's encoder")

    def result(self, spec: FamilySpec) -> FamilyResult:  # the table's row of ``spec``
        return next(r for r in self.table if r.family == spec)

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        tie = f"gap <= {c.epsilon}, or <= {c.tie_cap} with a paired bootstrap 95% interval including 0; to the cheaper to serve"
        serve = "median us per decision: one training request's features (embedding included) + predict_proba, one at a time"
        return {
            "chosen": self.chosen.name,
            "mode": self.mode,
            "requests": len(self.request_ids),
            "seconds": round(self.seconds, 3),
            "budget_min": round(self.budget_min, 2),
            "tie_rule": tie,
            "serve_us": serve,
            "rows": [r.to_dict() for r in self.table],
        }


def selection_markdown(selection: dict[str, Any]) -> list[str]:
    """report.md lines for a :meth:`Selection.to_dict`."""
    lines = [
        "## Family selection (out of fold, training requests only)",
        "",
        (
            f"Chosen: **{selection['chosen']}**; {selection['mode']}; {selection['seconds']:.0f} s of a "
            f"{selection['budget_min']:g} min budget. Ties: {selection['tie_rule']}. Serve: {selection['serve_us']}."
        ),
        "",
        "| family | status | OOF AIQ [95% CI] | fit s | serve us/decision |",
        "|---|---|---|---|---|",
    ]
    for r in selection["rows"]:
        aiq = "" if r["oof_aiq"] is None else f"{r['oof_aiq']:.4f} [{r['oof_aiq_low']:.4f}, {r['oof_aiq_high']:.4f}]"
        encoder = f" (+{r['encoder_seconds']:.0f} encoder)" * (r["encoder_seconds"] >= 1)
        refit = f" (refit ~{r['refit_seconds_projected']:.0f})" if r["refit_seconds_projected"] else ""
        fit = "" if r["fit_seconds"] is None else f"{r['fit_seconds']:.1f}" + encoder + refit
        name = f"**{r['name']}** (chosen)" if r["chosen"] else r["name"]
        lines.append(f"| {name} | {r['status']} | {aiq} | {fit} | {'' if r['serve_us'] is None else format(r['serve_us'], '.0f')} |")
    return lines


def auto_budget_min(n_requests: int, n_candidates: int) -> float:
    """The default budget: 8 min at 10k requests x 10 candidates, in proportion below, >= 1.5 min."""
    return min(8.0, max(1.5, 8.0 * n_requests * n_candidates / 100_000))


def _subsample(tasks: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` request indices, each task in proportion (at least one each), seeded."""
    rng = np.random.default_rng(seed)
    keep = []
    for task in np.unique(tasks):
        idx = np.flatnonzero(tasks == task)
        keep.append(rng.permutation(idx)[: max(1, round(size * len(idx) / len(tasks)))])
    return np.sort(np.concatenate(keep))


def _plan(train: Any, base: LearnedConfig, config: SelectConfig) -> tuple[Any, LearnedConfig, str]:
    n, m = train.n_requests, len(train.candidates)
    if n * m <= config.full_cells:
        return train, base, f"all {n:,} training requests, the final parameters ({base.router.n_folds} folds)"
    data = train.subset(_subsample(train.tasks, max(config.full_cells // m, 8 * config.fast_folds), config.seed))
    p = base.router
    faster: dict[str, Any] = {"n_folds": min(p.n_folds, config.fast_folds)}
    if isinstance(p, RouterParams):  # LightGBM's (another family's params carry only folds, calibration, seed over)
        faster |= {
            "n_estimators": min(p.n_estimators, config.fast_estimators),
            "learning_rate": max(p.learning_rate, config.fast_learning_rate),
        }
    return (
        data,
        dataclasses.replace(base, router=dataclasses.replace(p, **faster)),
        (
            f"a stratified subsample of {data.n_requests:,} of {n:,} training requests, "
            + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in faster.items())
            + " (the chosen family is then refit on all of them)"
        ),
    )


class EncoderSet:
    """Encoders built once from all training prompts; a narrower static width is the wider table's first
    columns (what distilling at that width gives: the same PCA), so one distillation serves all widths."""

    def __init__(self, prompts: list[str], cache_dir: Path, progress: Any, widest: int, outcomes: Any = None) -> None:
        self.prompts, self.cache_dir, self.progress, self.widest, self.outcomes = prompts, cache_dir, progress, widest, outcomes
        self.built: dict[tuple[str, int | None], Any] = {}

    def get(self, spec: FamilySpec) -> tuple[Any, float]:
        from tierroute.pipelines.encoders import make_encoder

        key = (spec.encoder, spec.dims)
        if key in self.built:
            return self.built[key], 0.0
        start = time.perf_counter()
        if spec.encoder == "static":
            wide = next((e for (name, _), e in self.built.items() if name == "static" and e.dims >= spec.dims), None)
            if wide is None:
                wide = make_encoder("static", self.prompts, self.cache_dir, self.progress, max(self.widest, spec.width))
                self.built[("static", wide.dims)] = wide
            encoder = wide if wide.dims <= spec.dims else dataclasses.replace(wide, table=np.ascontiguousarray(wide.table[:, : spec.dims]))
        else:
            encoder = make_encoder(spec.encoder, self.prompts, self.cache_dir, self.progress, spec.dims or 64, self.outcomes)
        self.built[key] = encoder
        return encoder, time.perf_counter() - start


def _embed_within(encoder: Any, texts: list[str], cache: Any, deadline: float) -> bool:
    """Embed ``texts`` into the cache in chunks; False (partly cached) once the rest would overrun."""
    start, done = time.perf_counter(), 0
    for i in range(0, len(texts), 256):
        cache.encode(encoder, texts[i : i + 256])
        done += len(texts[i : i + 256])
        now = time.perf_counter()
        if done < len(texts) and now + (now - start) / done * (len(texts) - done) > deadline:
            return False
    return True


def _serve_us(router: LearnedRouter, requests: Sequence[Any], config: SelectConfig) -> float:
    """Median us of one request's features (embedding included) + the family's calibrated ``predict_proba``."""
    cache, router.cache = router.cache, None  # time the encoder, not the embedding cache
    try:
        router.model_.predict_proba(router.features([requests[0]]))  # warm-up (lazy loads)
        times: list[float] = []
        stop = time.perf_counter() + config.timing_seconds
        for request in requests[: config.timing_requests]:
            t = time.perf_counter()
            router.model_.predict_proba(router.features([request]))
            times.append(time.perf_counter() - t)
            if len(times) >= 10 and time.perf_counter() > stop:
                break
        return float(np.median(times) * 1e6)
    finally:
        router.cache = cache


def _estimate(spec: FamilySpec, done: list[FamilyResult], n_signals: int) -> float:
    """Seconds a family should take: the dearest fitted one of its kind (else the median), scaled by width."""
    ran = [r for r in done if r.fit_seconds is not None]
    scaled = [(r.fit_seconds or 0.0) * (n_signals + spec.width) / (n_signals + r.family.width) for r in ran if r.family.kind == spec.kind]
    return max(scaled) if scaled else float(np.median([r.fit_seconds for r in ran])) if ran else 0.0


def _refit_scale(train: Any, data: Any, base: LearnedConfig, fit_base: LearnedConfig, kind: str) -> float:
    """Refit s per selection-fit s: 0 in full mode; else more requests, folds, trees (~sqrt of the rate ratio)."""
    if data is train:
        return 0.0
    p: Any = base.router  # the kinds' params differ: learning_rate only where hasattr says
    q: Any = fit_base.router
    scale = train.n_requests / data.n_requests * (p.n_folds + 1) / (q.n_folds + 1)
    return scale * (q.learning_rate / p.learning_rate if kind in ROUTER_KINDS and hasattr(q, "learning_rate") else 1.0) ** 0.5


def select_family(
    train: Any,
    catalogue: Any,
    config: SelectConfig | None = None,
    cache_dir: str | Path = "runs/cache",
    progress: Any = None,
    *,
    base: LearnedConfig | None = None,
    engine: Any = None,
) -> Selection:
    """Choose a family for ``train`` (training requests only). ``base``: the final training's
    LearnedConfig (the pool sets encoder and kind); ``engine``: a Dask engine for the fits."""
    from tierroute.features.embeddings import EmbeddingCache
    from tierroute.progress import stage

    config, base = config or SelectConfig(), base or LearnedConfig()
    clock = time.perf_counter()
    budget_min = config.budget_min if config.budget_min is not None else auto_budget_min(train.n_requests, len(train.candidates))
    deadline = clock + 60.0 * budget_min
    pool = sorted(config.pool or default_pool(), key=FamilySpec.fit_rank)
    if not pool:
        raise ConfigError("The family selection has an empty pool; pin a supported --kind and --encoder.")
    data, fit_base, mode = _plan(train, base, config)
    cache = EmbeddingCache(Path(cache_dir) / "embeddings")
    widest = max((s.dims for s in pool if s.dims), default=64)
    encoders = EncoderSet([r.prompt for r in train.requests], Path(cache_dir), progress, widest, train.correct)
    boot = np.random.default_rng(config.seed).integers(0, data.n_requests, size=(config.n_boot, data.n_requests))
    n_signals = len(LearnedRouter(base).extractor.spec.names)
    table: list[FamilyResult] = []
    leader_refit = 0.0  # the refit the current leader would need, should it stay the choice
    for i, spec in enumerate(pool, 1):
        ran = any(r.fit_seconds is not None for r in table)
        scale = _refit_scale(train, data, base, fit_base, spec.kind)
        est = _estimate(spec, table, n_signals)
        if ran and time.perf_counter() + est + max(est * scale, leader_refit) > deadline:
            table.append(FamilyResult(spec, "skipped (budget)"))
            continue
        stage(progress, f"family selection {i}/{len(pool)}: {spec.name} on {data.n_requests:,} training requests")
        row = FamilyResult(spec, "ok")
        try:
            encoder, row.encoder_seconds = encoders.get(spec)
            row.bundleable = bundleable(encoder, spec.kind)
            if config.require_bundleable and not row.bundleable:
                row.status = "not bundleable"
            elif spec.encoder == "minilm" and not _embed_within(
                encoder, [r.prompt for r in data.requests], cache, deadline if ran else float("inf")
            ):
                row.status = "skipped (budget)"
            else:
                start = time.perf_counter()
                router = LearnedRouter(family_config(fit_base, spec), encoder, cache).fit(data, catalogue, None, engine)
                row.fit_seconds = time.perf_counter() - start
                row.refit_seconds = row.fit_seconds * scale
                sweep = router.oof_sweep_
                row.aiq = float(sweep.aiq())
                row.boot = np.array([sweep.aiq(rows) for rows in boot])
                row.aiq_low, row.aiq_high = (float(q) for q in np.quantile(row.boot, [0.025, 0.975]))
                row.serve_us = _serve_us(router, data.requests, config)
                row.router = router
        except (TierrouteError, ValueError, RuntimeError, ImportError, MemoryError) as exc:
            row.status = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
        table.append(row)
        fitted = [r for r in table if r.aiq is not None]
        leader_refit = (max(fitted, key=lambda r: r.aiq).refit_seconds or 0.0) if fitted else 0.0  # type: ignore[arg-type, return-value]
    chosen = _choose(table, config, deadline - time.perf_counter())
    chosen.chosen = True
    return Selection(
        table,
        chosen.family,
        mode,
        tuple(data.request_ids),
        time.perf_counter() - clock,
        config,
        budget_min,
        router=chosen.router if data is train else None,
        encoders=dict(encoders.built),
    )


def _choose(table: list[FamilyResult], config: SelectConfig, left: float = float("inf")) -> FamilyResult:
    """The best OOF AIQ among the fitted, bundleable families; ties to the cheaper to serve, among
    those whose refit fits in the ``left`` seconds of the budget."""
    eligible = [r for r in table if r.status == "ok" and r.aiq is not None]
    if not eligible:
        reasons = "; ".join(f"{r.family.name}: {r.status}" for r in table)
        raise ConfigError(
            f"No router family could be fitted and bundled on this data ({reasons}). Pin --kind and --encoder, "
            "or raise --select-budget-min."
        )
    best = max(eligible, key=lambda r: (r.aiq, [-x for x in r.family.serve_rank()]))

    def ties(r: FamilyResult) -> bool:
        gap = best.aiq - r.aiq  # type: ignore[operator]
        return gap <= config.epsilon or (gap <= config.tie_cap and float(np.quantile(best.boot - r.boot, 0.025)) <= 0.0)  # type: ignore[operator]

    # a refit must fit in what is left; one already fitted on every request (refit 0) always does,
    # even once the budget is spent: else the choice would hang on the machine's load
    tied = [r for r in eligible if r is best or (ties(r) and (r.refit_seconds or 0.0) <= max(left, 0.0))]
    return min(tied, key=lambda r: (r.family.serve_rank(), -(r.aiq or 0.0)))
