"""Choose the router family by the user's own training data: each family of a pool is cross-fitted
on the *training* requests only and judged by its out-of-fold AIQ (the knob swept over out-of-fold
P(correct); bootstrap 95% interval over requests); the held-out evaluation never decides anything.

    selection = select_family(train, catalogue, SelectConfig(budget_min=6), "runs/cache")
    selection.chosen, selection.table     # FamilySpec; one FamilyResult per family

- Pool: :data:`POOL`, one line per family ({pooled, per_candidate} x {none, static 64, static 256,
  MiniLM}, kNN and low-rank), less the kinds LearnedRouter cannot fit; pinning a kind (or an
  encoder) searches only the other (:func:`default_pool`).
- Budget: families run cheapest first; each one's fit time is estimated from those already run
  (same kind first, scaled by feature width) and one that would overrun ``budget_min`` is
  "skipped (budget)" (the first always runs; MiniLM embeddings are computed in chunks and stop
  when the rest would overrun; a static distillation is not budgeted, and is cached).
- Size: up to ``full_cells`` requests x candidates every family is fitted on all training requests
  with the final parameters, so the chosen router *is* the final model; above, on a stratified
  subsample with fewer folds and a faster learning rate, and the chosen family is refit on all.
- Ties: within ``epsilon`` OOF AIQ of the best, or within ``tie_cap`` with a paired bootstrap
  interval of the gap including 0; they go to the cheaper to serve, a deterministic order
  estimated from encoder and kind (:meth:`FamilySpec.serve_rank`); measured us/decision reported.
- A family whose encoder or kind cannot be served from a bundle is never chosen (:func:`bundleable`).

The budget is wall-clock time, so the pool searched depends on the machine's speed: pin ``kind``
and ``encoder`` (or raise the budget) when runs must be reproducible to the bit.
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
from tierroute.models.router import ROUTER_KINDS

__all__ = ["POOL", "EncoderSet", "FamilyResult", "FamilySpec", "SelectConfig", "Selection", "bundleable", "default_pool",
           "family_config", "kind_supported", "select_family", "selection_markdown"]

_ENCODER_RANK = {"none": 0, "static": 1, "minilm": 2}
_KIND_FIT_RANK = {"lowrank": 0, "per_candidate": 1, "pooled": 2, "knn": 3}  # cheapest to cross-fit first
_KIND_SERVE_RANK = {"lowrank": 0, "pooled": 1, "per_candidate": 1, "knn": 2}  # one dot product < trees < neighbours


@dataclass(frozen=True)
class FamilySpec:
    """One family: a router ``kind``, an ``encoder`` ("none", "static", "minilm") and, for the
    static encoder, its width ``dims``."""

    kind: str
    encoder: str = "none"
    dims: int | None = None

    def __post_init__(self) -> None:
        if self.encoder not in _ENCODER_RANK:
            raise ConfigError(f"FamilySpec encoder must be one of {tuple(_ENCODER_RANK)}; got {self.encoder!r}.")
        if (self.encoder == "static") != (self.dims is not None):
            raise ConfigError(f"FamilySpec needs dims for the static encoder only; got {self.encoder!r} with dims={self.dims}.")

    name = property(lambda self: f"{self.kind}/{self.encoder}" + (f"-{self.dims}" if self.dims else ""))

    @property
    def width(self) -> int:  # embedding columns beside the request signals
        return self.dims if self.dims is not None else {"none": 0, "minilm": 384}[self.encoder]

    def serve_rank(self) -> tuple[int, int, int]:
        """Deterministic serving-cost order (lower = cheaper): the encoder dominates (none: 0;
        static: a table gather, ~tens of us, growing with width; MiniLM: a transformer, ~ms)."""
        return _ENCODER_RANK[self.encoder], self.width, _KIND_SERVE_RANK.get(self.kind, 3)

    def fit_rank(self) -> tuple[int, int, int]:  # cheapest to cross-fit first
        return _ENCODER_RANK[self.encoder], self.width, _KIND_FIT_RANK.get(self.kind, 4)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "encoder": self.encoder, "dims": self.dims}


# the pool: adding a family is one line
POOL: tuple[FamilySpec, ...] = (
    FamilySpec("pooled", "none"),
    FamilySpec("per_candidate", "none"),
    FamilySpec("pooled", "static", 64),
    FamilySpec("per_candidate", "static", 64),
    FamilySpec("pooled", "static", 256),
    FamilySpec("per_candidate", "static", 256),
    FamilySpec("pooled", "minilm"),
    FamilySpec("per_candidate", "minilm"),
    FamilySpec("knn", "static", 256),
    FamilySpec("knn", "minilm"),
    FamilySpec("lowrank", "static", 256),
    FamilySpec("lowrank", "minilm"),
)


def kind_supported(kind: str) -> bool:
    """True when :class:`LearnedRouter` can fit ``kind`` (it builds any of
    :data:`tierroute.models.families.FAMILY_KINDS` through ``make_estimator``)."""
    from tierroute.models import families, learned

    return kind in ROUTER_KINDS or (kind in families.FAMILY_KINDS and hasattr(learned, "make_estimator"))


def default_pool(kind: str = "auto", encoder: str = "auto", static_dims: int | None = None) -> tuple[FamilySpec, ...]:
    """:data:`POOL` restricted to the supported kinds, the pinned ``kind`` / ``encoder`` ("auto":
    all) and, when given, one static width ``static_dims``."""
    pool = []
    for spec in POOL:
        if not kind_supported(spec.kind) or kind not in ("auto", spec.kind) or encoder not in ("auto", spec.encoder):
            continue
        if spec.encoder == "static" and static_dims is not None:
            spec = dataclasses.replace(spec, dims=static_dims)
        if spec not in pool:
            pool.append(spec)
    if not pool and kind != "auto" and encoder != "auto":
        pool = [FamilySpec(kind, encoder, (static_dims or 64) if encoder == "static" else None)]
    return tuple(pool)


def family_config(base: LearnedConfig, spec: FamilySpec) -> LearnedConfig:
    """``base`` (policy, target, objective, LightGBM params...) with ``spec``'s encoder and kind;
    another family's params carry over folds, calibration and seed."""
    from tierroute.models.families import family_params

    return dataclasses.replace(base, encoder=spec.encoder, router=family_params(spec.kind, base.router))


def bundleable(encoder: Any, kind: str) -> bool:
    """Whether a router of ``kind`` on ``encoder`` can be served from a bundle: the encoder's own
    ``bundleable`` flag when it has one, else it must save itself (static, MiniLM-ONNX; the torch
    MiniLM cannot); the kind must be a LightGBM (ONNX) or numpy-scored family."""
    from tierroute.models.families import SCORER_KINDS

    flag = getattr(encoder, "bundleable", None)
    encoder_ok = bool(flag() if callable(flag) else flag) if flag is not None else (encoder is None or hasattr(encoder, "save"))
    return encoder_ok and (kind in ROUTER_KINDS or kind in SCORER_KINDS)


@dataclass(frozen=True)
class SelectConfig:
    """How the family is chosen (see the module docstring)."""

    budget_min: float = 6.0
    epsilon: float = 0.005  # OOF AIQ gaps up to this always tie
    tie_cap: float = 0.01  # gaps up to this tie when the paired bootstrap interval includes 0
    n_boot: int = 200
    full_cells: int = 40_000  # requests x candidates fitted in full; above, a subsample of this size
    fast_folds: int = 3  # subsample mode: folds, learning rate and tree cap of the selection fits
    fast_learning_rate: float = 0.08
    fast_estimators: int = 300
    timing_requests: int = 200  # serve timing: up to this many single-request calls ...
    timing_seconds: float = 2.0  # ... or this long (at least 10 calls)
    seed: int = 0
    pool: tuple[FamilySpec, ...] = ()  # empty: default_pool()
    require_bundleable: bool = True

    def __post_init__(self) -> None:
        for name in ("budget_min", "epsilon", "tie_cap", "timing_seconds"):
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
    encoder_seconds: float = 0.0
    serve_us: float | None = None
    bundleable: bool | None = None
    chosen: bool = False
    router: Any = field(default=None, repr=False)
    boot: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = {**self.family.to_dict(), "status": self.status, "oof_aiq": self.aiq, "oof_aiq_low": self.aiq_low,
               "oof_aiq_high": self.aiq_high, "fit_seconds": self.fit_seconds, "encoder_seconds": self.encoder_seconds,
               "serve_us": self.serve_us, "bundleable": self.bundleable, "chosen": self.chosen}
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


@dataclass
class Selection:
    """The table, the chosen family, and what the final training can reuse: ``router`` (the
    chosen family fitted on all training requests with the final parameters; None in subsample
    mode) and ``encoders`` (built from all training prompts, by (encoder, dims))."""

    table: list[FamilyResult]
    chosen: FamilySpec
    mode: str
    request_ids: tuple[str, ...]
    seconds: float
    config: SelectConfig
    router: Any = None
    encoders: dict[tuple[str, int | None], Any] = field(default_factory=dict, repr=False)

    encoder = property(lambda self: self.encoders.get((self.chosen.encoder, self.chosen.dims)), doc="the chosen family's encoder")

    def result(self, spec: FamilySpec) -> FamilyResult:  # the table's row of ``spec``
        return next(r for r in self.table if r.family == spec)

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {"chosen": self.chosen.name, "mode": self.mode, "requests": len(self.request_ids),
                "seconds": round(self.seconds, 3), "budget_min": c.budget_min, "metric": "out-of-fold AIQ on training requests",
                "tie_rule": (f"gap <= {c.epsilon}, or gap <= {c.tie_cap} with a paired bootstrap 95% interval including 0; "
                             "ties go to the cheaper to serve (encoder, width, kind)"),
                "serve_us": "median us per decision: one training request's features (embedding included) and the family's "
                            "calibrated predict_proba, one request at a time (Python path)",
                "rows": [r.to_dict() for r in self.table]}


def selection_markdown(selection: dict[str, Any]) -> list[str]:
    """report.md lines for a :meth:`Selection.to_dict`."""
    lines = ["## Family selection (out of fold, training requests only)", "",
             (f"Chosen: **{selection['chosen']}**; {selection['mode']}; {selection['seconds']:.0f} s of a "
             f"{selection['budget_min']:g} min budget. Ties: {selection['tie_rule']}. Serve: {selection['serve_us']}."), "",
             "| family | status | OOF AIQ [95% CI] | fit s | serve us/decision |", "|---|---|---|---|---|"]
    for r in selection["rows"]:
        aiq = "" if r["oof_aiq"] is None else f"{r['oof_aiq']:.4f} [{r['oof_aiq_low']:.4f}, {r['oof_aiq_high']:.4f}]"
        encoder = f" (+{r['encoder_seconds']:.0f} encoder)" * (r["encoder_seconds"] >= 1)
        fit = "" if r["fit_seconds"] is None else f"{r['fit_seconds']:.1f}" + encoder
        name = f"**{r['name']}** (chosen)" if r["chosen"] else r["name"]
        lines.append(f"| {name} | {r['status']} | {aiq} | {fit} | {'' if r['serve_us'] is None else format(r['serve_us'], '.0f')} |")
    return lines


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
    faster = {"n_folds": min(p.n_folds, config.fast_folds)}
    if hasattr(p, "learning_rate"):  # LightGBM's (another family's params carry only folds, calibration, seed over)
        faster |= {"n_estimators": min(p.n_estimators, config.fast_estimators),
                   "learning_rate": max(p.learning_rate, config.fast_learning_rate)}
    fast = dataclasses.replace(p, **faster)
    return data, dataclasses.replace(base, router=fast), (
        f"a stratified subsample of {data.n_requests:,} of {n:,} training requests, "
        + ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in faster.items()) + " (the chosen family is then refit on all of them)")


class EncoderSet:
    """Encoders built once from all training prompts; a narrower static width is the wider table's
    first columns (what distilling at that width gives: the same PCA), so one distillation serves both."""

    def __init__(self, prompts: list[str], cache_dir: Path, progress: Any, widest: int) -> None:
        self.prompts, self.cache_dir, self.progress, self.widest = prompts, cache_dir, progress, widest
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
                wide = make_encoder("static", self.prompts, self.cache_dir, self.progress, max(self.widest, spec.dims))
                self.built[("static", wide.dims)] = wide
            encoder = wide if wide.dims <= spec.dims else dataclasses.replace(wide, table=np.ascontiguousarray(wide.table[:, : spec.dims]))
        else:
            encoder = make_encoder(spec.encoder, self.prompts, self.cache_dir, self.progress)
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
    """Median wall time of one request's features (signals + embedding) and the fitted family's
    calibrated ``predict_proba``, one request at a time (Python path; the bundle runs the same
    encoder and an ONNX / numpy model)."""
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
    """Seconds a family should take: the dearest fitted one of its kind (else of any), scaled by width."""
    ran = [r for r in done if r.fit_seconds is not None]
    same = [r for r in ran if r.family.kind == spec.kind] or ran
    return max((r.fit_seconds or 0.0) * (n_signals + spec.width) / (n_signals + r.family.width) for r in same) if same else 0.0


def select_family(train: Any, catalogue: Any, config: SelectConfig | None = None, cache_dir: str | Path = "runs/cache",
                  progress: Any = None, *, base: LearnedConfig | None = None, engine: Any = None) -> Selection:
    """Choose a family for ``train`` (a RoutingData of training requests only). ``base``: the
    LearnedConfig the final training uses (its encoder and kind are the pool's to set);
    ``engine``: a Dask engine for the fits (None: here)."""
    from tierroute.features.embeddings import EmbeddingCache
    from tierroute.progress import stage

    config = config or SelectConfig()
    base = base or LearnedConfig()
    clock = time.perf_counter()
    deadline = clock + 60.0 * config.budget_min
    pool = sorted(config.pool or default_pool(), key=FamilySpec.fit_rank)
    if not pool:
        raise ConfigError("The family selection has an empty pool; pin a supported --kind and --encoder.")
    data, fit_base, mode = _plan(train, base, config)
    cache = EmbeddingCache(Path(cache_dir) / "embeddings")
    widest = max((s.dims for s in pool if s.dims), default=64)
    encoders = EncoderSet([r.prompt for r in train.requests], Path(cache_dir), progress, widest)
    boot = np.random.default_rng(config.seed).integers(0, data.n_requests, size=(config.n_boot, data.n_requests))
    n_signals = len(LearnedRouter(base).extractor.spec.names)
    table: list[FamilyResult] = []
    for i, spec in enumerate(pool, 1):
        ran = any(r.fit_seconds is not None for r in table)
        if ran and time.perf_counter() + _estimate(spec, table, n_signals) > deadline:
            table.append(FamilyResult(spec, "skipped (budget)"))
            continue
        stage(progress, f"family selection {i}/{len(pool)}: {spec.name} on {data.n_requests:,} training requests")
        row = FamilyResult(spec, "ok")
        try:
            encoder, row.encoder_seconds = encoders.get(spec)
            row.bundleable = bundleable(encoder, spec.kind)
            if config.require_bundleable and not row.bundleable:
                row.status = "not bundleable"
            elif spec.encoder == "minilm" and not _embed_within(encoder, [r.prompt for r in data.requests], cache,
                                                                 deadline if ran else float("inf")):
                row.status = "skipped (budget)"
            else:
                start = time.perf_counter()
                router = LearnedRouter(family_config(fit_base, spec), encoder, cache).fit(data, catalogue, None, engine)
                row.fit_seconds = time.perf_counter() - start
                sweep = router.oof_sweep_
                row.aiq = float(sweep.aiq())
                row.boot = np.array([sweep.aiq(rows) for rows in boot])
                row.aiq_low, row.aiq_high = (float(q) for q in np.quantile(row.boot, [0.025, 0.975]))
                row.serve_us = _serve_us(router, data.requests, config)
                row.router = router
        except (TierrouteError, ValueError, RuntimeError, ImportError, MemoryError) as exc:
            row.status = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
        table.append(row)
    chosen = _choose(table, config)
    chosen.chosen = True
    return Selection(table, chosen.family, mode, tuple(data.request_ids), time.perf_counter() - clock, config,
                     router=chosen.router if data is train else None, encoders=dict(encoders.built))


def _choose(table: list[FamilyResult], config: SelectConfig) -> FamilyResult:
    """The best OOF AIQ among the fitted, bundleable families; ties to the cheaper to serve."""
    eligible = [r for r in table if r.status == "ok" and r.aiq is not None]
    if not eligible:
        reasons = "; ".join(f"{r.family.name}: {r.status}" for r in table)
        raise ConfigError(f"No router family could be fitted and bundled on this data ({reasons}). Pin --kind and --encoder, "
                          "or raise --select-budget-min.")
    best = max(eligible, key=lambda r: (r.aiq, [-x for x in r.family.serve_rank()]))

    def ties(r: FamilyResult) -> bool:
        gap = best.aiq - r.aiq  # type: ignore[operator]
        return gap <= config.epsilon or (gap <= config.tie_cap and float(np.quantile(best.boot - r.boot, 0.025)) <= 0.0)  # type: ignore[operator]

    return min((r for r in eligible if ties(r)), key=lambda r: (r.family.serve_rank(), -(r.aiq or 0.0)))
