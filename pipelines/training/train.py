"""``tierroute train``: ingest outcomes (or generate the built-in synthetic workload), fit the
learned router, judge it against the heuristic and simple baselines on held-out requests, and
track the run in MLflow with its model registered as ``tierroute``.

    result = run_train(TrainConfig())               # synthetic default data
    result.report["aiq"], result.run_id, result.out_dir
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierroute._params import check_fraction, check_int, check_number
from tierroute.errors import ConfigError
from tierroute.features.embeddings import ENCODERS, EmbeddingCache
from tierroute.features.logged import is_logged
from tierroute.models.families import FAMILY_KINDS
from tierroute.models.learned import LearnedConfig, LearnedRouter
from tierroute.pipelines.data.catalogues import pick_catalogue
from tierroute.pipelines.data.ingest import IngestConfig, run_ingest
from tierroute.pipelines.encoders import make_encoder
from tierroute.pipelines.outputs import prepare_out_dir
from tierroute.pipelines.training.distributed import ENGINES
from tierroute.pipelines.training.tracking import DEFAULT_TRACKING_URI

__all__ = ["TrainConfig", "TrainResult", "run_train", "pick_catalogue", "make_encoder", "ENCODER_CHOICES", "KIND_CHOICES"]

#: what ``encoder`` and ``kind`` accept ("auto": chosen by out-of-fold AIQ on the training data)
ENCODER_CHOICES = ("auto", *ENCODERS, "none")
KIND_CHOICES = ("auto", *FAMILY_KINDS)


@dataclass(frozen=True)
class TrainConfig:
    """One training job. ``data`` empty = the built-in synthetic workload (``synthetic_requests``
    requests). Without ``eval_data``, ``test_fraction`` of the requests (stratified by task,
    seeded) are held out for evaluation."""

    data: tuple[str, ...] = ()
    format: str = "auto"
    catalogue: str | None = None
    # "auto" (default): the router family (kind x encoder) is chosen by out-of-fold AIQ on the
    # training requests (pipelines/training/selection.py) within ``select_budget_min``; pinning one of
    # ``kind`` / ``encoder`` searches only the other, pinning both trains that family
    encoder: str = "auto"
    kind: str = "auto"
    # the selection and, when it ran on a subsample, the chosen family's refit; None: 8 min at 10k
    # requests x 10 candidates, in proportion below, at least 1.5 (selection.auto_budget_min)
    select_budget_min: float | None = None
    static_dims: int | None = None  # None: 64 when the encoder is pinned to static, the pool's widths with auto
    eval_data: tuple[str, ...] = ()
    out_dir: str | None = None
    test_fraction: float = 0.25
    seed: int = 0
    synthetic_requests: int = 3000
    # decision stability (pipelines/evaluation/stability.py): at most this many held-out requests are
    # perturbed (whitespace, case, punctuation, a polite prefix, typos, system-message order); 0: off
    stability_requests: int = 300
    # what defines the router before it sees data: the family's parameters, signals, policy, target,
    # objective (the operating point on the out-of-fold knob curve; the bundle carries the curve, so
    # serving can pick another) and the IPS clip. Its ``encoder`` and its params' kind are set by
    # ``encoder`` / ``kind`` above (the family choice, which may be "auto")
    learned: LearnedConfig = field(default_factory=LearnedConfig)
    tracking_uri: str = DEFAULT_TRACKING_URI
    register: bool = True
    cache_dir: str = "runs/cache"
    max_bad_fraction: float = 0.05
    # one weight per ``data`` path (empty: all 1): how much that file's requests count in training
    # (e.g. previous weeks' data at 0.5 next to this week's logs at 1); evaluation ignores weights
    data_weights: tuple[float, ...] = ()
    # "dask": ingestion, features and LightGBM on a Dask cluster at ``scheduler`` (an address, or
    # "local" for a LocalCluster here); see pipelines/training/distributed.py
    engine: str = "local"
    scheduler: str = "local"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(map(str, self.data)))
        object.__setattr__(self, "data_weights", tuple(self.data_weights))
        if self.data_weights:
            if len(self.data_weights) != len(self.data):
                raise ConfigError(
                    f"TrainConfig got {len(self.data_weights)} data_weights for {len(self.data)} data paths; "
                    "give one weight per path, or none."
                )
            for w in self.data_weights:
                check_number(w, "data_weights", "TrainConfig", 1e-6)
        object.__setattr__(self, "eval_data", tuple(map(str, self.eval_data)))
        if self.encoder not in ENCODER_CHOICES:
            raise ConfigError(f"The 'encoder' parameter of TrainConfig must be one of {ENCODER_CHOICES}. Got {self.encoder!r} instead.")
        from tierroute.pipelines.training.selection import POOL, kind_supported

        if self.kind != "auto" and not kind_supported(self.kind):
            kinds = ("auto", *dict.fromkeys(s.kind for s in POOL if kind_supported(s.kind)))
            raise ConfigError(f"The 'kind' parameter of TrainConfig must be one of {kinds}. Got {self.kind!r} instead.")
        if self.select_budget_min is not None:
            check_number(self.select_budget_min, "select_budget_min", "TrainConfig", 0.0)
        if not isinstance(self.learned, LearnedConfig):
            raise ConfigError(f"The 'learned' parameter of TrainConfig must be a LearnedConfig. Got {self.learned!r} instead.")
        check_number(self.test_fraction, "test_fraction", "TrainConfig", 0.05, 0.95)
        check_int(self.seed, "seed", "TrainConfig", 0)
        check_int(self.synthetic_requests, "synthetic_requests", "TrainConfig", 50)
        check_int(self.stability_requests, "stability_requests", "TrainConfig", 0)
        check_fraction(self.max_bad_fraction, "max_bad_fraction", "TrainConfig")
        if self.static_dims is not None:
            check_int(self.static_dims, "static_dims", "TrainConfig", 2, 384)
        if self.engine not in ENGINES:
            raise ConfigError(f"The 'engine' parameter of TrainConfig must be one of {ENGINES}. Got {self.engine!r} instead.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"], d["eval_data"], d["data_weights"] = list(self.data), list(self.eval_data), list(self.data_weights)
        d["learned"] = self.learned.to_dict()
        return d


@dataclass
class TrainResult:
    run_id: str | None
    out_dir: Path
    report: dict[str, Any]
    router: Any

    def summary(self) -> dict[str, Any]:
        """The ``train --json`` object: the learned router's figures at top level, baselines beside."""
        r = self.report
        shape = ("accuracy", "cost_per_query", "cost_per_correct")
        baselines = {k: {s: r["baselines"][k].get(s) for s in shape} for k in ("heuristic", "random", "oracle")}
        baselines["singles"] = {s["name"]: {x: s.get(x) for x in shape} for s in r["baselines"]["singles"]}
        return {
            "schema_version": 1,
            "run_id": self.run_id,
            "out_dir": str(self.out_dir),
            "bundle": str(self.out_dir / "bundle"),
            "aiq": r["aiq"],
            "accuracy": r["accuracy"],
            "cost_per_query": r["cost_per_query"],
            "cost_per_correct": r["cost_per_correct"],
            "policy": r["learned"]["policy"],
            "ece": r["ece"],
            "requests": r["requests"],
            "baselines": baselines,
            "family": r.get("family"),
            "objectives": r.get("objectives", []),
        }


def training_reference(router: Any, train: Any) -> dict[str, Any]:
    """The training distributions a drift report compares logs with (see pipelines/lifecycle/drift.py): the
    signals, the served model's P(correct) and tier mix on the training requests (what serving the
    same traffic would log), and the embedding centroid."""
    from tierroute.pipelines.lifecycle.drift import reference_stats

    X = router.features(train.requests)
    proba, _ = router.predict_proba(train.requests)
    tiers = [router.catalogue_.tier_of(router.candidates_[j]) for j in router.decide(train.requests)]
    width = len(router.extractor.feature_names)
    embedding = X[:, width:] if X.shape[1] > width else None
    return reference_stats(X, router.feature_spec_.names, proba, router.candidates_, tiers, embedding)


def _split(tasks: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test request indices, ``test_fraction`` of each task held out (seeded)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(tasks), dtype=bool)
    for value in np.unique(tasks):
        idx = np.flatnonzero(tasks == value)
        n_test = max(1, int(round(test_fraction * len(idx)))) if len(idx) > 1 else 0
        test[rng.permutation(idx)[:n_test]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)


def run_train(config: TrainConfig, progress: Callable[[str], None] | None = None, engine: Any = None, encoder: Any = None) -> TrainResult:
    """Run the job; returns the run id (None when tracking is off), folder, report and router.
    ``progress``: a :class:`tierroute.progress.Progress` (stage lines and bars) or any callable
    taking a message (stage lines only); None is silent. ``config.engine == "dask"`` connects to
    ``config.scheduler`` for the job's ingestion, features and LightGBM fits, unless ``engine`` (a
    connected DaskEngine, e.g. the one ``retrain`` opened) is given. ``encoder``: a fitted encoder
    used as it is instead of building ``config.encoder`` (``retrain`` passes the champion's when the
    data holds feature-only rows, whose vectors were logged under the champion's FeatureSpec)."""
    if engine is not None:
        return _run_train(config, progress, engine, encoder)
    if config.engine == "dask":
        from tierroute.pipelines.training.distributed import DaskConfig, DaskEngine

        (progress or (lambda message: None))(f"connecting to the Dask cluster ({config.scheduler})")
        with DaskEngine(DaskConfig(config.scheduler)) as engine:
            return _run_train(config, progress, engine, encoder)
    return _run_train(config, progress, None, encoder)


def _run_train(config: TrainConfig, progress: Callable[[str], None] | None, engine: Any, fixed_encoder: Any) -> TrainResult:
    from tierroute.models.export import export_bundle
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl
    from tierroute.pipelines.evaluation.evaluate import evaluate, write_report
    from tierroute.pipelines.evaluation.stability import StabilityConfig
    from tierroute.pipelines.training.selection import FamilySpec, SelectConfig, auto_budget_min, default_pool, family_config, select_family
    from tierroute.pipelines.training.tracking import log_training_run, save_router
    from tierroute.serving.conformance import write_conformance

    say = progress or (lambda message: None)
    clock = time.perf_counter()
    out = prepare_out_dir(config.out_dir, "train")
    paths = config.data
    if not paths:
        say(f"generating the built-in synthetic workload ({config.synthetic_requests:,} requests)")
        paths = (str(write_jsonl(SyntheticConfig(config.synthetic_requests, config.seed), out / "data" / "synthetic.jsonl")),)
    say("ingesting outcomes")
    ingested = run_ingest(
        IngestConfig(
            paths=paths,
            format=config.format,
            out_dir=str(out / "ingest"),
            max_bad_fraction=config.max_bad_fraction,
            catalogue=config.catalogue,
        ),
        engine=engine,
    )
    frame = ingested.to_pandas()
    models = sorted(frame["model"].unique().tolist())
    catalogue, derived = pick_catalogue(config.catalogue, frame, out)
    if derived:
        say(derived)
    weighted = config.data_weights and len(set(config.data_weights)) > 1
    data = RoutingData.from_frame(frame, models, np.asarray(config.data_weights)[ingested.row_origins()] if weighted else None)
    del frame  # RoutingData holds what training needs (one prompt per request, not one per outcome row)
    if config.eval_data:
        evaluated = run_ingest(
            IngestConfig(
                paths=config.eval_data,
                format=config.format,
                out_dir=str(out / "ingest-eval"),
                max_bad_fraction=config.max_bad_fraction,
                catalogue=config.catalogue,
            )
        )
        train, test = data.trainable(), RoutingData.from_frame(evaluated.to_pandas(), models)
    else:
        train_idx, test_idx = _split(data.tasks, config.test_fraction, config.seed)
        train, test = data.subset(train_idx).trainable(), data.subset(test_idx)
    if train.n_requests < 2 * config.learned.router.n_folds:
        raise ConfigError(
            f"Only {train.n_requests} training requests have an outcome for every candidate or a logged choice with "
            f"its propensity; at least {2 * config.learned.router.n_folds} are needed. Add outcome data."
        )
    cache_dir = Path(config.cache_dir)
    base = config.learned
    selection, router = None, None
    feature_only = int(is_logged(train.requests).sum())
    if feature_only and "auto" in (config.kind, config.encoder):
        raise ConfigError(
            f"{feature_only} training request(s) are feature-only (logged vectors, no prompt text); they can only train "
            "the router family whose FeatureSpec they were logged under, so the family cannot be chosen with 'auto'. "
            "Retrain from the champion that logged them (tierroute retrain --decisions ... --feedback ...), or pin "
            "--kind and --encoder to that bundle's."
        )
    if "auto" in (config.kind, config.encoder):  # chosen on the training requests only; the test split never enters
        pool = default_pool(config.kind, config.encoder, config.static_dims)
        budget = auto_budget_min(train.n_requests, len(models)) if config.select_budget_min is None else config.select_budget_min
        say(
            f"choosing the router family by out-of-fold AIQ on the {train.n_requests:,} training requests "
            f"({len(pool)} families, budget {budget:.1f} min)"
        )
        selection = select_family(
            train, catalogue, SelectConfig(budget_min=budget, seed=config.seed, pool=pool), cache_dir, progress, base=base, engine=engine
        )
        spec, encoder, router = selection.chosen, selection.encoder, selection.router
    else:
        spec = FamilySpec(config.kind, config.encoder, (config.static_dims or 64) if config.encoder in ("static", "tuned") else None)
        say(f"building features ({config.encoder} encoder) for {train.n_requests:,} training requests")
        encoder = (
            fixed_encoder
            if fixed_encoder is not None
            else make_encoder(config.encoder, [r.prompt for r in train.requests], cache_dir, progress, spec.dims or 64, train.correct)
        )
    learned = family_config(base, spec)
    if router is None:  # pinned, or selected on a subsample: fit the family on every training request
        say(f"embedding prompts and fitting {spec.name} with {config.learned.router.n_folds}-fold calibration")
        router = LearnedRouter(learned, encoder, EmbeddingCache(cache_dir / "embeddings")).fit(train, catalogue, progress, engine)
    say(f"evaluating on {test.n_requests:,} held-out requests")
    report = evaluate(
        router, test, catalogue, seed=config.seed, stability=StabilityConfig(max_requests=config.stability_requests, seed=config.seed)
    )
    report["family"] = {**spec.to_dict(), "selected": selection is not None}
    if selection is not None:
        report["selection"] = selection.to_dict()
    from tierroute.pipelines.evaluation.importance import group_importances

    report["importances"] = group_importances(router, test.requests, config.seed)  # mean |contribution| per candidate
    report["train_seconds"] = time.perf_counter() - clock
    artifacts = write_report(report, out / "evaluation")
    router_dir = save_router(router, out / "model")
    say("exporting the serving bundle (ONNX)")
    headline = {k: report.get(k) for k in ("aiq", "accuracy", "cost_per_query", "cost_per_correct", "ece", "requests")}
    bundle_dir = export_bundle(
        router,
        out / "bundle",
        metrics=headline,
        reference=training_reference(router, train),
        training={"inputs": ingested.inputs, "rows": ingested.rows_kept},
    )
    write_conformance(bundle_dir)  # derived data beside the manifest: any runtime checks itself against it
    importance = dict(zip(router.feature_spec_.names, map(float, router.model_.feature_importance())))
    run_id = None
    if config.tracking_uri:
        say(f"logging to MLflow ({config.tracking_uri})")
        data_info = {
            "inputs": ingested.inputs,
            "rows": ingested.rows_kept,
            "quarantined": ingested.rows_quarantined,
            "train_requests": train.n_requests,
            "test_requests": test.n_requests,
            "candidates": list(models),
            "catalogue": catalogue.name,
        }
        run_id = log_training_run(
            config.tracking_uri,
            config.to_dict(),
            data_info,
            report,
            artifacts,
            router_dir,
            importance,
            register=config.register,
            bundle_dir=bundle_dir,
            selection=report.get("selection"),
        )
    (out / "train.json").write_text(json.dumps({"config": config.to_dict(), "run_id": run_id}, indent=2) + "\n", encoding="utf-8")
    return TrainResult(run_id, out, report, router)
