"""The promotion gate and rollback: the MLflow registry alias ``champion`` moves to a challenger
only when the evidence says it is not worse.

    result = gate(champion, challenger, data, catalogue, GateConfig())      # routers + held-out data
    result.promote, result.reasons, result.to_dict()
    promote_version(tracking_uri, challenger_version, data_paths)            # gate, then move the alias
    rollback(tracking_uri)                                                   # the previous champion back

The gate compares the two routers on the same held-out requests, resampling requests (paired
bootstrap, 95% intervals). Benchmarked requests (every candidate's outcome known) count as
observed; logged ones (the chosen model's outcome and its propensity) by their doubly-robust
pseudo-outcomes, with both routers' averaged P(correct) as the outcome model, so the figures are
then DR estimates (``figures["estimator"]``); ``figures["off_policy"]`` adds IPS, SNIPS and DR on
the logged requests alone, for the challenger, the champion and the heuristic.

- quality: challenger minus champion accuracy must not be below ``-quality_tolerance`` (the
  interval's low end is what counts);
- cost: challenger over champion cost per correct answer must not exceed ``1 + cost_tolerance``
  (the interval's high end);
- the heuristic: the challenger must beat the article's tree: more accurate (interval above 0), or
  as accurate within the tolerance at a lower cost per correct answer;
- stability: the challenger's flip rate under meaning-preserving prompt perturbations
  (:mod:`tierroute.pipelines.evaluation.stability`: whitespace, case, punctuation, a polite prefix,
  typos, a reordered system message) must not exceed the champion's by more than
  ``flip_tolerance`` (absolute; default 0.05; None turns the check off). Both routers are measured
  on the same perturbed copies of up to ``stability_requests`` of the gate's requests. When the
  champion has no figure (one passed in ``flip_rates`` as None: a model from before the
  measurement), the check is skipped and the verdict says so.

With no champion yet, only the heuristic condition applies. Every promotion keeps the champion it
replaced as alias ``previous_champion`` so :func:`rollback` can restore it; each decision is
written to the challenger's version as tags (``gate.promote``, ``gate.reasons``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError

__all__ = ["GateConfig", "GateResult", "gate", "promote_version", "rollback", "CHAMPION", "PREVIOUS"]

CHAMPION, PREVIOUS = "champion", "previous_champion"


@dataclass(frozen=True)
class GateConfig:
    """Tolerances of the promotion gate (logged with every decision)."""

    quality_tolerance: float = 0.005
    cost_tolerance: float = 0.05
    n_boot: int = 2000
    seed: int = 0
    #: the most the challenger's flip rate may exceed the champion's (absolute); None: not checked
    flip_tolerance: float | None = 0.05
    #: at most this many gate requests (a seeded sample) are perturbed for the flip rates
    stability_requests: int = 1000

    def __post_init__(self) -> None:
        check_number(self.quality_tolerance, "quality_tolerance", "GateConfig", 0.0, 1.0)
        check_number(self.cost_tolerance, "cost_tolerance", "GateConfig", 0.0)
        if self.flip_tolerance is not None:
            check_number(self.flip_tolerance, "flip_tolerance", "GateConfig", 0.0, 1.0)
        check_int(self.stability_requests, "stability_requests", "GateConfig", 1)
        check_int(self.n_boot, "n_boot", "GateConfig", 100)
        check_int(self.seed, "seed", "GateConfig", 0)


@dataclass
class GateResult:
    promote: bool
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paired(correct_a: np.ndarray, cost_a: np.ndarray, correct_b: np.ndarray, cost_b: np.ndarray, config: GateConfig) -> dict[str, float]:
    """Accuracy difference (a - b) and cost-per-correct ratio (a / b), with bootstrap intervals."""
    rng = np.random.default_rng(config.seed)
    n = len(correct_a)
    sums = np.empty((config.n_boot, 4))  # per resample: correct a, correct b, cost a, cost b
    columns = np.column_stack([correct_a, correct_b, cost_a, cost_b])
    chunk = max(1, 2_000_000 // max(1, n))  # bounded memory: about 2M indices at a time
    for start in range(0, config.n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, config.n_boot - start), n))
        sums[start : start + len(idx)] = np.stack([columns[i].sum(axis=0) for i in idx])
    acc_a, acc_b = sums[:, 0] / n, sums[:, 1] / n
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (sums[:, 2] / sums[:, 0]) / (sums[:, 3] / sums[:, 1])
        point_ratio = (cost_a.sum() / correct_a.sum()) / (cost_b.sum() / correct_b.sum())
    ratio = np.where(np.isfinite(ratio), ratio, np.inf)
    return {
        "accuracy_diff": float(correct_a.mean() - correct_b.mean()),
        "accuracy_diff_low": float(np.quantile(acc_a - acc_b, 0.025)),
        "accuracy_diff_high": float(np.quantile(acc_a - acc_b, 0.975)),
        "cost_per_correct_ratio": float(point_ratio) if np.isfinite(point_ratio) else float("inf"),
        "cost_per_correct_ratio_low": float(np.quantile(ratio, 0.025)),
        "cost_per_correct_ratio_high": float(np.quantile(ratio, 0.975)),
    }


def _outcomes(picks: np.ndarray, data: Any) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(data.n_requests)
    return data.correct[rows, picks].astype(float), data.cost[rows, picks].astype(float)


def gate(
    champion: Any | None,
    challenger: Any,
    data: Any,
    catalogue: Any,
    config: GateConfig | None = None,
    flip_rates: dict[str, float | None] | None = None,
) -> GateResult:
    """Decide whether ``challenger`` (a fitted LearnedRouter) may replace ``champion`` (one, or
    None), judged on ``data`` (a RoutingData of held-out requests: benchmarked or logged; other partial ones are
    left out). ``flip_rates``: the two routers' flip rates measured elsewhere (``{"challenger": x,
    "champion": y}``, None where a router has none); by default both are measured here on ``data``."""
    from tierroute.pipelines.evaluation.evaluate import heuristic_picks

    config = config if config is not None else GateConfig()
    observed = data.subset(np.flatnonzero(data.mask.all(axis=1) | data.logged_only))
    if observed.n_requests < 20:
        raise ConfigError(
            f"The gate needs held-out requests with every candidate's outcome or a logged choice with its "
            f"propensity; {observed.n_requests} have them (at least 20 needed). Pass more evaluation data."
        )
    for label, router in (("challenger", challenger), ("champion", champion)):
        if router is not None and tuple(router.candidates_) != tuple(observed.candidates):
            raise ConfigError(
                f"The {label} routes between {list(router.candidates_)} but the evaluation data has "
                f"{list(observed.candidates)}; the gate compares routers over the same candidates. Retrain it, "
                "or evaluate on data for its candidates."
            )
    logged = observed.logged_only
    data, q = observed, None
    if logged.any():  # doubly-robust pseudo-outcomes; the outcome model: both routers' estimates averaged
        estimates = [r.predict_proba(observed.requests) for r in (challenger, champion) if r is not None]
        q = (np.mean([e[0] for e in estimates], axis=0), np.mean([e[1] for e in estimates], axis=0))
        data = observed.with_estimates(*q)
    picks = {"challenger": challenger.decide(data.requests), "heuristic": heuristic_picks(data, catalogue)}
    if champion is not None:
        picks["champion"] = champion.decide(data.requests)
    new_correct, new_cost = _outcomes(picks["challenger"], data)
    tree_correct, tree_cost = _outcomes(picks["heuristic"], data)
    figures: dict[str, Any] = {
        "requests": data.n_requests,
        "logged_requests": int(logged.sum()),
        "estimator": "observed" if not logged.any() else ("dr" if logged.all() else "observed + dr"),
        "config": asdict(config),
        "challenger": {"accuracy": float(new_correct.mean()), "cost_per_correct": _cpc(new_cost, new_correct)},
        "heuristic": {"accuracy": float(tree_correct.mean()), "cost_per_correct": _cpc(tree_cost, tree_correct)},
    }
    reasons: list[str] = []
    vs_tree = _paired(new_correct, new_cost, tree_correct, tree_cost, config)
    figures["vs_heuristic"] = vs_tree
    beats_tree = vs_tree["accuracy_diff_low"] > 0 or (
        vs_tree["accuracy_diff_low"] >= -config.quality_tolerance and vs_tree["cost_per_correct_ratio_high"] < 1.0
    )
    if not beats_tree:
        reasons.append(
            f"does not beat the heuristic: accuracy {vs_tree['accuracy_diff']:+.4f} "
            f"[{vs_tree['accuracy_diff_low']:+.4f}, {vs_tree['accuracy_diff_high']:+.4f}], cost per correct "
            f"x{vs_tree['cost_per_correct_ratio']:.3f} [x{vs_tree['cost_per_correct_ratio_low']:.3f}, "
            f"x{vs_tree['cost_per_correct_ratio_high']:.3f}]"
        )
    if q is not None:
        from tierroute.pipelines.evaluation.offpolicy import policy_estimates

        at = np.flatnonzero(logged)
        a, p = observed.logged[at], observed.propensity[at]
        figures["off_policy"] = {
            "requests": len(at),
            **policy_estimates(
                observed.correct[at, a], observed.cost[at, a], a, p, {k: v[at] for k, v in picks.items()}, q[0][at], q[1][at]
            ),
        }
    if champion is not None:
        old_correct, old_cost = _outcomes(picks["champion"], data)
        figures["champion"] = {"accuracy": float(old_correct.mean()), "cost_per_correct": _cpc(old_cost, old_correct)}
        vs_old = _paired(new_correct, new_cost, old_correct, old_cost, config)
        figures["vs_champion"] = vs_old
        if vs_old["accuracy_diff_low"] < -config.quality_tolerance:
            reasons.append(
                f"less accurate than the champion beyond the tolerance: {vs_old['accuracy_diff']:+.4f} "
                f"[{vs_old['accuracy_diff_low']:+.4f}, {vs_old['accuracy_diff_high']:+.4f}] vs "
                f"-{config.quality_tolerance}"
            )
        if vs_old["cost_per_correct_ratio_high"] > 1 + config.cost_tolerance:
            reasons.append(
                f"costlier per correct answer than the champion beyond the tolerance: "
                f"x{vs_old['cost_per_correct_ratio']:.3f} [x{vs_old['cost_per_correct_ratio_low']:.3f}, "
                f"x{vs_old['cost_per_correct_ratio_high']:.3f}] vs x{1 + config.cost_tolerance:.3f}"
            )
    notes: list[str] = []
    if champion is not None and config.flip_tolerance is not None:
        figures["stability"] = _stability(champion, challenger, data, config, flip_rates)
        new, old, tol = figures["stability"]["challenger"], figures["stability"]["champion"], config.flip_tolerance
        if old is None:
            notes.append(
                "stability check skipped: the champion has no flip-rate figure (a model from before decision "
                f"stability was measured); the challenger's flip rate is {'n/a' if new is None else f'{new:.3f}'}"
            )
        elif new is None:
            notes.append(f"stability check skipped: the challenger has no flip-rate figure; the champion's is {old:.3f}")
        elif new - old > tol:
            reasons.append(
                f"less stable than the champion beyond the tolerance: flip rate under meaning-preserving prompt "
                f"perturbations {new:.3f} vs the champion's {old:.3f} ({new - old:+.3f}, at most +{tol:.3f} "
                "allowed)"
            )
    promote = not reasons
    if promote:
        reasons.append(
            "not worse than the champion within the tolerances, and beats the heuristic"
            if champion is not None
            else "no champion yet, and beats the heuristic"
        )
    return GateResult(promote, reasons + notes, figures)


def _stability(champion: Any, challenger: Any, data: Any, config: GateConfig, given: dict[str, float | None] | None) -> dict[str, Any]:
    """Both routers' flip rates: ``given``, or measured on the same perturbed copies of (a seeded
    sample of) the gate's requests."""
    if given is not None:
        return {
            "challenger": given.get("challenger"),
            "champion": given.get("champion"),
            "source": "given",
            "tolerance": config.flip_tolerance,
        }
    from tierroute.pipelines.evaluation.stability import StabilityConfig, flip_summary, perturbed_variants, sample_rows

    stability = StabilityConfig(max_requests=config.stability_requests, seed=config.seed)
    requests = [data.requests[i] for i in sample_rows(data.n_requests, stability)]
    variants = perturbed_variants(requests, stability)
    rates = {
        label: flip_summary(router.decide, requests, stability, label=label, variants=variants)
        for label, router in (("challenger", challenger), ("champion", champion))
    }
    return {
        "challenger": rates["challenger"]["flip_rate"],
        "champion": rates["champion"]["flip_rate"],
        "source": "measured",
        "requests": len(requests),
        "tolerance": config.flip_tolerance,
        "per_perturbation": {label: {k: v["flip_rate"] for k, v in r["per_perturbation"].items()} for label, r in rates.items()},
    }


def _cpc(cost: np.ndarray, correct: np.ndarray) -> float | None:
    return float(cost.sum() / correct.sum()) if correct.sum() else None


def registry_client(tracking_uri: str) -> Any:
    from tierroute.pipelines.training.tracking import load_mlflow, registry_uri_for

    mlflow = load_mlflow()  # telemetry off, and quiet inside a quiet_mlflow() block (--json runs)

    registry = registry_uri_for(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry)
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry)


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The version behind ``alias``, or None when the alias (or the model) does not exist; any other
    failure (the registry down, no permission) is raised, never read as "no champion"."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def promote_version(
    tracking_uri: str,
    version: str,
    data_paths: tuple[str, ...],
    config: GateConfig | None = None,
    name: str = "tierroute",
    out_dir: str | None = None,
) -> GateResult:
    """Gate registered ``version`` of ``name`` against the current champion on the outcome files
    ``data_paths`` (held-out requests); move the alias when it passes. The decision is tagged on the
    version either way and written, with its figures, to ``gate.json`` in the run folder."""
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest
    from tierroute.pipelines.outputs import prepare_out_dir
    from tierroute.pipelines.training.tracking import load_router_from

    client = registry_client(tracking_uri)
    try:
        candidate = client.get_model_version(name, str(version))
    except Exception:  # noqa: BLE001
        raise ConfigError(
            f"Registered model {name!r} has no version {version!r} at {tracking_uri}. List them with "
            "the MLflow UI or pass a version `tierroute train` registered."
        ) from None
    challenger = load_router_from(candidate.run_id, tracking_uri)
    current = alias_version(client, name, CHAMPION)
    if current is not None and str(current.version) == str(candidate.version):
        raise ConfigError(f"Version {version} of {name!r} is already the champion; nothing to promote.")
    champion = load_router_from(current.run_id, tracking_uri) if current is not None else None
    folder = prepare_out_dir(out_dir, "promote")
    ingested = run_ingest(IngestConfig(paths=tuple(data_paths), out_dir=str(folder / "ingest")), catalogue=challenger.catalogue_)
    data = RoutingData.from_frame(ingested.to_pandas(), challenger.candidates_)
    result = gate(champion, challenger, data, challenger.catalogue_, config)
    result.figures |= {
        "challenger_version": str(candidate.version),
        "champion_version": None if current is None else str(current.version),
        "out_dir": str(folder),
    }
    client.set_model_version_tag(name, candidate.version, "gate.promote", str(result.promote).lower())
    client.set_model_version_tag(name, candidate.version, "gate.reasons", json.dumps(result.reasons)[:5000])
    if result.promote:
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current.version)
        client.set_registered_model_alias(name, CHAMPION, candidate.version)
    (folder / "gate.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def rollback(tracking_uri: str, name: str = "tierroute") -> dict[str, Any]:
    """Make ``previous_champion`` the champion again (the demoted version becomes the previous one)."""
    client = registry_client(tracking_uri)
    previous, current = alias_version(client, name, PREVIOUS), alias_version(client, name, CHAMPION)
    if previous is None:
        raise ConfigError(
            f"Registered model {name!r} has no {PREVIOUS!r} alias at {tracking_uri}: nothing to roll back to. "
            "A rollback needs an earlier promotion."
        )
    if previous.tags.get("gate.rolled_back") == "true":
        raise ConfigError(
            f"{PREVIOUS!r} of {name!r} is version {previous.version}, which a rollback already demoted; rolling "
            "back again would undo that rollback. Promote it through the gate if it should serve again."
        )
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current.version)
        client.set_model_version_tag(name, current.version, "gate.rolled_back", "true")
    return {"champion": str(previous.version), "previous_champion": None if current is None else str(current.version)}
