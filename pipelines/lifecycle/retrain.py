"""``tierroute retrain``: new outcome logs + the previous training data -> a challenger trained
with the champion's configuration -> the promotion gate on held-out new requests.

    result = run_retrain(RetrainConfig(logs=("week48.jsonl",)))
    result.version, result.gate.promote, result.gate.reasons, result.out_dir

1. The champion (registry alias ``champion``) gives the configuration: its router family (kind,
   encoder and width: the family it was trained with, or the one selection chose for it when it
   was trained with ``auto``; retraining never re-selects), LightGBM parameters, policy and
   target; its catalogue prices the data.
2. The new logs are ingested (bad rows quarantined as always); a seeded ``holdout_fraction`` of
   their requests (per task) is held out for the gate and never trained on.
3. The previous training data (``previous``; by default the champion's own training files, when
   they are still on disk) is joined, minus rows older than ``window_days`` when set, and minus
   requests the new logs hold again (the newer outcomes win); its requests count
   ``previous_weight`` times as much as the new ones in training (default 1).
4. The challenger is trained (``tierroute train`` with the champion's settings: the run is tracked
   and registered) and gated against the champion and the tree on the held-out requests
   (:mod:`tierroute.pipelines.lifecycle.promote`).

New logs may be benchmark-style (every candidate's outcome per request) or production logs (the
chosen model's outcome only, with ``chosen`` and the logged ``propensity``). Logged requests train
with inverse-propensity weights, and the gate judges them by doubly-robust estimates, reporting
IPS, SNIPS and DR for challenger, champion and heuristic (``gate.figures["off_policy"]``). Same
inputs, same seed: the same model (the bundle id is reproducible).

Feature-only rows (privacy mode: the logged feature vector and FeatureSpec fingerprint, no prompt;
:mod:`tierroute.pipelines.data.feature_rows`) are trained on when every one carries the champion's
fingerprint (:func:`check_feature_rows` refuses any other, naming both): the challenger then keeps
the champion's encoder, so its FeatureSpec is the one the vectors were logged under.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError
from tierroute.models.catalogue import BUILTIN_CATALOGUES, builtin_catalogue
from tierroute.pipelines.lifecycle.promote import GateConfig, GateResult
from tierroute.pipelines.training.tracking import DEFAULT_TRACKING_URI

__all__ = ["RetrainConfig", "RetrainResult", "run_retrain", "check_feature_rows"]


@dataclass(frozen=True)
class RetrainConfig:
    logs: tuple[str, ...] = ()
    previous: tuple[str, ...] | None = None  # None: the champion's own training files
    window_days: float | None = None
    previous_weight: float = 1.0  # a previous request's training weight, relative to a new one
    holdout_fraction: float = 0.25
    seed: int = 0
    tracking_uri: str = DEFAULT_TRACKING_URI
    out_dir: str | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    cache_dir: str = "runs/cache"  # embeddings and distilled encoders, as `tierroute train`
    engine: str = "local"  # "dask": the challenger's training runs on the cluster at ``scheduler``
    scheduler: str = "local"
    decisions: tuple[str, ...] = ()  # decision logs joined with ``feedback`` into new outcome rows
    feedback: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "logs", tuple(map(str, self.logs)))
        object.__setattr__(self, "decisions", tuple(map(str, self.decisions)))
        object.__setattr__(self, "feedback", tuple(map(str, self.feedback)))
        if self.previous is not None:
            object.__setattr__(self, "previous", tuple(map(str, self.previous)))
        if not self.logs and not self.decisions:
            raise ConfigError(
                "The 'logs' parameter of RetrainConfig needs at least one outcome log. Pass --logs FILE..., "
                "or --decisions FILE... --feedback FILE... to join served traffic with its feedback."
            )
        if self.window_days is not None:
            check_number(self.window_days, "window_days", "RetrainConfig", 0.0)
        check_number(self.holdout_fraction, "holdout_fraction", "RetrainConfig", 0.05, 0.9)
        check_number(self.previous_weight, "previous_weight", "RetrainConfig", 1e-6)
        if self.engine not in ("local", "dask"):
            raise ConfigError(f"The 'engine' parameter of RetrainConfig must be one of ('local', 'dask'). Got {self.engine!r} instead.")
        check_int(self.seed, "seed", "RetrainConfig", 0)


@dataclass
class RetrainResult:
    version: str
    run_id: str
    gate: GateResult
    out_dir: Path
    rows: dict[str, int]
    join: dict[str, Any] | None = None  # the outcomes join report, when decisions + feedback were given

    def summary(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "version": self.version,
            "run_id": self.run_id,
            "promoted": self.gate.promote,
            "reasons": self.gate.reasons,
            "gate": self.gate.figures,
            "rows": self.rows,
            "out_dir": str(self.out_dir),
            **({"join": self.join} if self.join is not None else {}),
        }


def _records(frame: Any) -> Iterator[dict[str, Any]]:
    """Canonical rows as JSON-able dicts (NaN -> null, schema strings -> objects), one at a time
    (a million-row log is never held twice)."""
    columns = list(frame.columns)
    for values in frame.itertuples(index=False, name=None):
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in zip(columns, values)}
        if isinstance(schema := clean.get("output_schema"), str):
            clean["output_schema"] = json.loads(schema)
        vector = clean.pop("features", None)
        spec = clean.pop("feature_spec", None)
        if vector is not None and spec is not None:  # a feature-only row (privacy mode): NaN back to null
            clean["features"] = [None if v is None or v != v else float(v) for v in vector]
            clean["feature_spec"] = spec
        yield clean


def _write(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write ``rows`` as JSONL; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
            n += 1
    return n


def _holdout(frame: Any, fraction: float, seed: int) -> set[str]:
    """Request ids held out: ``fraction`` of each task's requests (seeded)."""
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for _, group in frame.groupby(frame["task"].fillna("")):
        ids = sorted(group["request_id"].unique())
        take = max(1, int(round(fraction * len(ids)))) if len(ids) > 1 else 0
        held.update(rng.permutation(ids)[:take].tolist())
    return held


def check_feature_rows(frame: Any, champion: Any) -> int:
    """How many feature-only rows (privacy mode) ``frame`` holds; raises FeatureError, naming both
    fingerprints, when any was logged under another FeatureSpec than the champion's."""
    from tierroute.errors import FeatureError
    from tierroute.features.logged import spec_mismatch

    if "feature_spec" not in frame:
        return 0
    specs = frame["feature_spec"].dropna()
    expected = champion.feature_spec_.fingerprint()
    other = specs[specs != expected]
    if len(other):
        raise FeatureError(spec_mismatch(str(other.iloc[0]), expected, int(len(other)), "the champion"))
    return int(len(specs))


def _logged_requests(frame: Any) -> int:
    """Requests of a canonical frame known through a logged choice (chosen with a propensity)."""
    logged = frame["chosen"].eq(True) & frame["propensity"].notna()
    return int(frame.loc[logged, "request_id"].nunique())


def run_retrain(config: RetrainConfig, progress: Any = None) -> RetrainResult:
    """Train a challenger on the joined data with the champion's settings, then gate it. With
    ``engine="dask"`` one connection to ``scheduler`` serves the whole job: the logs' ingestion,
    and the challenger's ingestion, features and LightGBM fits."""
    if config.engine == "dask":
        from tierroute.pipelines.training.distributed import DaskConfig, DaskEngine

        with DaskEngine(DaskConfig(config.scheduler)) as engine:
            return _run_retrain(config, progress, engine)
    return _run_retrain(config, progress, None)


def _run_retrain(config: RetrainConfig, progress: Any, engine: Any) -> RetrainResult:
    from tierroute.models.learned import LearnedConfig
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest
    from tierroute.pipelines.lifecycle.promote import CHAMPION, alias_version, promote_version, registry_client
    from tierroute.pipelines.outputs import prepare_out_dir
    from tierroute.pipelines.training.tracking import load_router_from
    from tierroute.pipelines.training.train import TrainConfig, run_train
    from tierroute.progress import stage

    client = registry_client(config.tracking_uri)
    current = alias_version(client, "tierroute", CHAMPION)
    if current is None:
        raise ConfigError(
            f"There is no champion at {config.tracking_uri} to retrain from. Train a router "
            "(`tierroute train`) and promote it (`tierroute promote --version N --data ...`) first."
        )
    champion = load_router_from(current.run_id, config.tracking_uri)
    out = prepare_out_dir(config.out_dir, "retrain")
    logs, join = config.logs, None
    if config.decisions:
        from tierroute.pipelines.lifecycle.outcomes import OutcomesConfig, join_outcomes

        stage(progress, f"joining {len(config.decisions)} decision log(s) with {len(config.feedback)} feedback log(s)")
        join = join_outcomes(OutcomesConfig(decisions=config.decisions, feedback=config.feedback), out / "data" / "outcomes.jsonl")
        if not join["rows"]:
            raise ConfigError(
                f"Joining the decision logs with the feedback gave no outcome rows ({join['decisions']} "
                f"decisions, {join['feedback_lines']} feedback lines, excluded {join['excluded']}); see "
                f"{join['apart']}. Log prompts (serve --log-prompts) or feature vectors (serve "
                "--log-features) and post feedback for served request ids."
            )
        logs = (*logs, join["out"])
    stage(progress, f"ingesting {len(logs)} new log(s)")
    new = run_ingest(IngestConfig(paths=logs, out_dir=str(out / "ingest-new")), catalogue=champion.catalogue_, engine=engine).to_pandas()
    previous = config.previous
    if previous is None:
        logged = client.get_run(current.run_id).data.params.get("config.data", "[]")
        previous = tuple(p for p in json.loads(logged) if Path(p).exists())
    old = None
    if previous:
        stage(progress, f"ingesting {len(previous)} previous training file(s)")
        old = run_ingest(
            IngestConfig(paths=previous, out_dir=str(out / "ingest-previous")), catalogue=champion.catalogue_, engine=engine
        ).to_pandas()
        if config.window_days is not None:
            cutoff = datetime.now(timezone.utc) - timedelta(days=config.window_days)
            stamps = [datetime.fromisoformat(t) if isinstance(t, str) and t else None for t in old["timestamp"]]
            old = old[[s is None or s >= cutoff for s in stamps]]
        old = old[~old["request_id"].isin(set(new["request_id"]))]  # newer outcomes win
    feature_rows = check_feature_rows(new, champion) + (0 if old is None else check_feature_rows(old, champion))
    held = _holdout(new, config.holdout_fraction, config.seed)
    data_paths = [str(out / "data" / "train-new.jsonl")]
    n_new = _write(_records(new[~new["request_id"].isin(held)]), Path(data_paths[0]))
    n_old = 0
    weights: tuple[float, ...] = ()
    if old is not None and len(old):
        data_paths.append(str(out / "data" / "train-previous.jsonl"))
        n_old = _write(_records(old), Path(data_paths[1]))
        weights = (1.0, config.previous_weight)
    holdout_path = out / "data" / "holdout.jsonl"
    _write(_records(new[new["request_id"].isin(held)]), holdout_path)
    rows = {
        "new": int(len(new)),
        "previous": int(0 if old is None else len(old)),
        "train": n_new + n_old,
        "held_out_requests": len(held),
        "logged_new_requests": int(_logged_requests(new)),
        "feature_rows": feature_rows,
    }
    del new, old  # the challenger's training reads the files; a million-row log is not kept twice
    gc.collect()
    learned = champion.config
    static_dims = champion.encoder.dims if learned.encoder in ("static", "tuned") and champion.encoder is not None else 64
    catalogue = _champion_catalogue(champion.catalogue_, out)
    stage(progress, f"training the challenger with the champion's settings (version {current.version})")
    trained = run_train(
        TrainConfig(
            data=tuple(data_paths),
            data_weights=weights,
            eval_data=(str(holdout_path),),
            catalogue=catalogue,
            encoder=learned.encoder,
            kind=learned.router.kind,  # the champion's family, pinned: a champion selected with auto is not re-selected
            learned=LearnedConfig.carried_over(learned),  # all of them: signals, objective and the IPS clip too
            engine=config.engine,
            scheduler=config.scheduler,
            static_dims=static_dims,
            seed=config.seed,
            tracking_uri=config.tracking_uri,
            out_dir=str(out / "train"),
            cache_dir=config.cache_dir,
        ),
        progress=progress,
        engine=engine,
        encoder=champion.encoder if feature_rows else None,
    )  # logged vectors: the champion's spec
    versions = client.search_model_versions(f"name='tierroute' and run_id='{trained.run_id}'")
    if not versions:
        raise ConfigError(f"The challenger run {trained.run_id} registered no version of 'tierroute'; check the MLflow store.")
    version = str(max(int(v.version) for v in versions))
    stage(progress, f"gating version {version} against the champion (version {current.version})")
    gate = promote_version(config.tracking_uri, version, (str(holdout_path),), config.gate, out_dir=str(out / "promote"))
    result = RetrainResult(version, str(trained.run_id), gate, out, rows, join)
    (out / "retrain.json").write_text(json.dumps(result.summary(), indent=2, default=str) + "\n", encoding="utf-8")
    return result


def _champion_catalogue(catalogue: Any, out: Path) -> str:
    """What the challenger's training loads as the champion's catalogue: a built-in by name, its
    file when it is still there, else (a file moved away, one read off the data) the champion's
    own copy, written into this retrain's folder."""
    if catalogue.name in BUILTIN_CATALOGUES and catalogue == builtin_catalogue(catalogue.name):
        return str(catalogue.name)
    if Path(str(catalogue.source)).is_file():
        return str(catalogue.source)
    path = out / "champion-catalogue.toml"
    path.write_text(catalogue.to_toml(), encoding="utf-8")
    return str(path)
