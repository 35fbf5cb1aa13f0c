"""From the long outcome table to the matrices routers train and are judged on.

One row per request, one column per candidate: ``correct`` (0/1, NaN where unknown), ``quality``,
``cost`` (realised USD, NaN where unknown) and ``mask``; plus the requests themselves (for
features) and their task labels (for stratified splits).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierroute.errors import DataValidationError
from tierroute.request import Request

__all__ = ["RoutingData"]


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

    @property
    def mask(self) -> np.ndarray:
        return ~np.isnan(self.correct)

    @property
    def n_requests(self) -> int:
        return len(self.request_ids)

    @classmethod
    def from_frame(cls, frame: Any, candidates: Sequence[str] | None = None) -> RoutingData:
        """Pivot a canonical outcome DataFrame. ``candidates`` fixes the column order (and drops
        other models); by default every model in the frame, sorted."""
        import pandas as pd

        models = list(candidates) if candidates is not None else sorted(frame["model"].unique().tolist())
        unknown = sorted(set(models) - set(frame["model"].unique()))
        if unknown:
            raise DataValidationError(
                f"No outcomes for candidate(s) {unknown} in this data (it has {sorted(frame['model'].unique())}). "
                "Check the catalogue or the data."
            )
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
        requests = tuple(
            Request(p, json.loads(s) if isinstance(s, str) else None, None if pd.isna(sla) else float(sla))
            for p, s, sla in zip(firsts["prompt"], firsts["output_schema"], firsts["latency_sla_ms"])
        )
        tasks = firsts["task"].fillna("(none)").astype(str).to_numpy()
        return cls(tuple(ids), requests, tasks, tuple(models), correct, quality, cost, latency)

    def subset(self, index: np.ndarray) -> RoutingData:
        """The requests at ``index`` (same candidates)."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return RoutingData(
            tuple(self.request_ids[i] for i in idx), tuple(self.requests[i] for i in idx), self.tasks[idx],
            self.candidates, self.correct[idx], self.quality[idx], self.cost[idx],
            None if self.latency is None else self.latency[idx],
        )

    def complete(self) -> RoutingData:
        """Only the requests with an outcome for every candidate (what a fair comparison needs)."""
        return self.subset(np.flatnonzero(self.mask.all(axis=1)))
