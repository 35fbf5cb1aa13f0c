"""Task-level references for bench/quality.py: how far routing by the task label alone gets.

- **task router**: knows each test request's task and routes on the per-task accuracy and cost
  measured on the *training* requests (a lookup table: for each knob value lambda, per task, the
  candidate that maximises accuracy - lambda * cost). A task the training requests lack uses their
  overall figures.
- **task oracle**: the same table built from the *test* requests' own per-task figures: the most
  any router that decides by task alone can reach on this test set.
- **prior router**, when no test task was seen in training (a leave-one-task-out fold): every
  request to one candidate per knob value, picked on the training requests' overall figures. It
  knows nothing of the request; a learned router below it on a new task routes on a signal that
  does not carry over to that task. (The task oracle there is the zero router: the test's singles.)

tierroute does not get the task label at serve time, so none of them is a competitor. They answer "does
the learned router see more than the task?", and they bound what a target can ask of data whose
signal is the task: a learned router beats the task oracle only on signal within tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tierroute.models.hull import aiq, cost_at_quality
from tierroute.models.policy import sweep
from tierroute.pipelines.evaluation.metrics import apgr, cpt

__all__ = ["task_level_picks", "task_references"]


def task_level_picks(correct: np.ndarray, cost: np.ndarray, tasks: np.ndarray, test_tasks: np.ndarray) -> list[np.ndarray]:
    """For each knob value of the learned router's own ``lambda`` sweep (cheapest end first), the
    candidate index of every test request, chosen by the policy the router uses (``models.policy``)
    on its task's mean accuracy and mean cost over (``correct``, ``cost``, ``tasks``) in place of
    P(correct) and the expected cost."""
    correct, cost, tasks = np.asarray(correct, float), np.asarray(cost, float), np.asarray(tasks)
    overall = correct.mean(0), cost.mean(0)
    stats = {t: (correct[tasks == t].mean(0), cost[tasks == t].mean(0)) for t in np.unique(tasks)}
    per_request = [stats.get(t, overall) for t in np.asarray(test_tasks)]
    proba, expected = np.array([a for a, _ in per_request]), np.array([c for _, c in per_request])
    return [picks for _, picks in sweep("lambda", proba, expected)]


def task_references(train: Any, test: Any) -> dict[str, dict[str, float | None]]:
    """{"task router": ..., "task oracle": ...} ({"prior router": ...} when no test task is a training
    task), each with ``aiq``, ``cost_ratio_at_best`` (the cost at the best single's test accuracy
    over its cost, read off the hull) and, with two candidates, ``apgr`` and ``cpt50`` (the stronger
    one as strong)."""
    y, c = np.asarray(test.correct, float), np.asarray(test.cost, float)
    rows = np.arange(len(y))
    singles = [(float(c[:, j].mean()), float(y[:, j].mean())) for j in range(y.shape[1])]
    lo, hi = min(s[0] for s in singles), max(s[0] for s in singles)
    best = max(singles, key=lambda s: (s[1], -s[0]))
    strong = singles.index(best)
    out: dict[str, dict[str, float | None]] = {}
    seen = set(np.asarray(test.tasks).tolist()) & set(np.asarray(train.tasks).tolist())
    tables = (
        {"task router": (train.correct, train.cost, train.tasks), "task oracle": (y, c, test.tasks)}
        if seen
        else {"prior router": (train.correct, train.cost, train.tasks)}
    )
    for name, (ty, tc, tt) in tables.items():
        picks = task_level_picks(ty, tc, tt, np.asarray(test.tasks))
        points = [(float(c[rows, p].mean()), float(y[rows, p].mean())) for p in picks]
        at_best = cost_at_quality(points, best[1])
        ref: dict[str, float | None] = {"aiq": aiq(points, lo, hi), "cost_ratio_at_best": None if at_best is None else at_best / best[0]}
        if len(singles) == 2:
            weak = singles[1 - strong][1]
            share = np.array([float(np.mean(p == strong)) for p in picks])
            quality = np.array([q for _, q in points])
            ref["apgr"] = apgr(share, quality, weak, best[1])
            ref["cpt50"] = cpt(share, quality, weak, best[1], 0.5)
        out[name] = ref
    return out
