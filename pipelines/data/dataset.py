"""From the long outcome table to the matrices routers train and are judged on.

One row per request, one column per candidate: ``correct`` (0/1, NaN where unknown), ``quality``,
``cost`` (realised USD, NaN where unknown) and ``mask``; plus the requests themselves (for
features) and their task labels (for stratified splits).

Two kinds of request live side by side:

- **benchmarked**: every candidate's outcome is known (``complete()``); judged directly;
- **logged**: a production log holds the outcome of the model the serving policy chose only,
  with the probability it had of choosing it (``chosen=true`` and ``propensity`` in the canonical
  row). Such a request is trained on with inverse-propensity weights (:meth:`training_weights`)
  and judged with doubly-robust pseudo-outcomes (:meth:`with_estimates`).

A feature-only outcome row (privacy mode: no prompt, the logged ``features`` vector and its
``feature_spec`` fingerprint) becomes a :class:`~tierroute.features.logged.LoggedRequest`, which
the feature assembly reads instead of text.

``weight`` (per request, default 1) scales a request's say in training (e.g. older data counted
less); judging ignores it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tierroute.errors import DataValidationError
from tierroute.features.logged import LoggedRequest
from tierroute.request import Request

__all__ = ["RoutingData"]


def _request(prompt: Any, schema: Any, sla: float | None, vector: Any, spec: Any) -> Request:
    """A row's request: its prompt, or for a feature-only row (no prompt; privacy mode) a
    :class:`~tierroute.features.logged.LoggedRequest` carrying the logged vector (NaN for null)."""
    if isinstance(prompt, str) or vector is None or not isinstance(spec, str):
        return Request(prompt, schema, sla)
    values = tuple(float("nan") if v is None else float(v) for v in vector)
    return LoggedRequest("", schema, sla, features=values, feature_spec=spec)


@dataclass(frozen=True)
class RoutingData:
    """Outcomes as (requests x candidates) matrices."""

    request_ids: tuple[str, ...]
    requests: tuple[Request, ...]
    tasks: np.ndarray
    candidates: tuple[str, ...]
    correct: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray | None = None
    logged: np.ndarray | None = None  # (n,) the logged (chosen) candidate's column, -1 where none
    propensity: np.ndarray | None = None  # (n,) the serving policy's probability of that choice
    weight: np.ndarray | None = None  # (n,) training weight per request (None: all 1)

    @property
    def mask(self) -> np.ndarray:
        return ~np.isnan(self.correct)

    @property
    def logged_only(self) -> np.ndarray:
        """(n,) True for requests known only through a logged choice with its propensity."""
        if self.logged is None or self.propensity is None:
            return np.zeros(self.n_requests, dtype=bool)
        return ~self.mask.all(axis=1) & (self.logged >= 0) & np.isfinite(self.propensity)

    def _logged_propensities(self, only: np.ndarray) -> np.ndarray:
        """The logged requests' propensities, refused unless in (0, 1] (ingest guarantees it; a
        RoutingData built by hand might not)."""
        rows = np.flatnonzero(only) if only.dtype == bool else only
        p = self.propensity[rows]  # type: ignore[index]
        bad = ~((p > 0) & (p <= 1))
        if bad.any():
            i = int(rows[np.flatnonzero(bad)[0]])
            raise DataValidationError(
                f"Request {self.request_ids[i]!r} has a logged propensity of {float(p[bad][0])!r}; "
                "propensities must be in (0, 1]. Log the serving policy's probability of its choice."
            )
        return p

    @property
    def n_requests(self) -> int:
        return len(self.request_ids)

    @classmethod
    def from_frame(cls, frame: Any, candidates: Sequence[str] | None = None, row_weights: Sequence[float] | None = None) -> RoutingData:
        """Pivot a canonical outcome DataFrame. ``candidates`` fixes the column order (and drops
        other models); by default every model in the frame, sorted. ``row_weights`` (one per frame
        row) become request weights (a request takes its largest row weight)."""
        import pandas as pd

        models = list(candidates) if candidates is not None else sorted(frame["model"].unique().tolist())
        unknown = sorted(set(models) - set(frame["model"].unique()))
        if unknown:
            raise DataValidationError(
                f"No outcomes for candidate(s) {unknown} in this data (it has {sorted(frame['model'].unique())}). "
                "Check the catalogue or the data."
            )
        if row_weights is not None:
            frame = frame.assign(_weight=np.asarray(row_weights, dtype=np.float64))
        frame = frame[frame["model"].isin(models)]
        firsts = frame.drop_duplicates("request_id")
        ids = firsts["request_id"].tolist()
        index = {rid: i for i, rid in enumerate(ids)}
        col = {m: j for j, m in enumerate(models)}
        n, m = len(ids), len(models)
        correct = np.full((n, m), np.nan)
        quality = np.full((n, m), np.nan)
        cost = np.full((n, m), np.nan)
        latency = np.full((n, m), np.nan)
        rows = frame["request_id"].map(index).to_numpy()
        cols = frame["model"].map(col).to_numpy()
        correct[rows, cols] = frame["correct"].astype(float).to_numpy()
        quality[rows, cols] = frame["quality"].astype(float).to_numpy()
        cost[rows, cols] = frame["cost_usd"].astype(float).to_numpy()
        latency[rows, cols] = pd.to_numeric(frame["latency_ms"], errors="coerce").astype(float).to_numpy()
        n_first = len(firsts)
        vectors = firsts["features"] if "features" in firsts else [None] * n_first
        specs = firsts["feature_spec"] if "feature_spec" in firsts else [None] * n_first
        requests = tuple(
            _request(p, json.loads(s) if isinstance(s, str) else None, None if pd.isna(sla) else float(sla), v, fs)
            for p, s, sla, v, fs in zip(firsts["prompt"], firsts["output_schema"], firsts["latency_sla_ms"], vectors, specs)
        )
        tasks = firsts["task"].fillna("(none)").astype(str).to_numpy()
        logged = np.full(n, -1, dtype=np.int64)
        propensity = np.full(n, np.nan)
        if "chosen" in frame and "propensity" in frame:
            chosen = frame["chosen"].eq(True).to_numpy()
            p = pd.to_numeric(frame["propensity"], errors="coerce").astype(float).to_numpy()
            pick = chosen & np.isfinite(p)
            logged[rows[pick]] = cols[pick]
            propensity[rows[pick]] = p[pick]
        weight = None
        if row_weights is not None:
            weight = np.zeros(n)
            np.maximum.at(weight, rows, frame["_weight"].to_numpy())
        return cls(tuple(ids), requests, tasks, tuple(models), correct, quality, cost, latency, logged, propensity, weight)

    def subset(self, index: np.ndarray) -> RoutingData:
        """The requests at ``index`` (same candidates)."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return RoutingData(
            tuple(self.request_ids[i] for i in idx),
            tuple(self.requests[i] for i in idx),
            self.tasks[idx],
            self.candidates,
            self.correct[idx],
            self.quality[idx],
            self.cost[idx],
            take(self.latency),
            take(self.logged),
            take(self.propensity),
            take(self.weight),
        )

    def complete(self) -> RoutingData:
        """Only the requests with an outcome for every candidate (what a fair comparison needs)."""
        return self.subset(np.flatnonzero(self.mask.all(axis=1)))

    def trainable(self) -> RoutingData:
        """The requests a router can learn from: benchmarked (every outcome) or logged (the chosen
        model's outcome with its propensity). Other partial requests are left out."""
        return self.subset(np.flatnonzero(self.mask.all(axis=1) | self.logged_only))

    def training_weights(self, max_weight: float = 20.0) -> np.ndarray | None:
        """(n, m) sample weights for the known outcomes: the request weight, times, for a logged
        request, 1 / propensity (clipped at ``max_weight``) so each candidate's training requests
        stand for all requests rather than those the old policy sent it. None when all are 1."""
        w = np.ones(self.correct.shape) if self.weight is None else np.repeat(self.weight[:, None], len(self.candidates), axis=1)
        only = self.logged_only
        if only.any():
            w[only] *= np.minimum(1.0 / self._logged_propensities(only), max_weight)[:, None]
        w = np.where(self.mask, w, 0.0)
        return None if np.all(w[self.mask] == 1.0) else w

    def with_estimates(self, q_correct: np.ndarray, q_cost: np.ndarray) -> RoutingData:
        """A copy whose logged requests carry doubly-robust pseudo-outcomes for every candidate:
        ``q + 1[j = logged] (observed - q) / propensity``, with ``q_correct`` (n, m) an outcome
        model's P(correct) and ``q_cost`` (n, m) its expected cost. The mean of any policy's
        pseudo-outcomes is the DR estimate of its accuracy (cost per query); benchmarked requests
        keep their observed outcomes. Pseudo-outcomes may leave [0, 1]: they are estimates."""
        only = np.flatnonzero(self.logged_only)
        if not len(only):
            return self
        correct, quality, cost = self.correct.copy(), self.quality.copy(), self.cost.copy()
        assert self.logged is not None  # there are logged-only requests
        a, p = self.logged[only], self._logged_propensities(only)
        for target, q in ((correct, q_correct), (quality, q_correct), (cost, q_cost)):
            observed = target[only, a]
            q_rows = np.asarray(q, dtype=np.float64)[only].copy()
            q_rows[np.arange(len(only)), a] += (observed - q_rows[np.arange(len(only)), a]) / p
            target[only] = q_rows
        return replace(self, correct=correct, quality=quality, cost=cost)
