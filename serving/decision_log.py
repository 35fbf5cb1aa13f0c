"""The decision log and the exploration slice: what retraining on production logs needs.

Production logs usually hold the outcome of the chosen model only. To learn from them (and to
estimate a new policy's value off-policy, :mod:`tierroute.pipelines.offpolicy`), every decision
is logged with the probability the serving policy had of making it (``propensity``), and a small
random share of traffic (``epsilon``, default 0) goes to a uniformly drawn candidate so that
every candidate keeps getting outcomes.

    log = DecisionLog("decisions.jsonl")                 # appends; never truncates
    router = Router.load("bundle/", RouterConfig(epsilon=0.05, seed=7), decision_log=log)

One JSON object per line (``schema_version`` 1): ``time``, ``request_id``, ``prompt_sha256``
(``prompt`` too when ``log_prompts``), ``latency_sla_ms``, ``has_schema``, ``signals``,
``probabilities``, ``model``, ``tier``, ``source``, ``fallback``, ``greedy_model`` (the policy's
own choice), ``explored``, ``propensity``, ``bundle_id``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tierroute._params import check_fraction
from tierroute.request import Request
from tierroute.serving.decision import Decision

__all__ = ["DecisionLog", "Explorer", "LOG_SCHEMA_VERSION"]

LOG_SCHEMA_VERSION = 1


class Explorer:
    """epsilon-uniform exploration over a bundle's candidates, with the propensity of what it
    returns: P(a | x) = (1 - epsilon) * [a is the policy's choice] + epsilon / m, m the candidates
    that fit the request's SLA. Seeded; a lock makes the draws safe across threads (their order
    then follows the threads' order). The tree's decisions are never explored (propensity 1)."""

    def __init__(self, epsilon: float, candidates: tuple[str, ...], tiers: tuple[str, ...], seed: int | None = None) -> None:
        check_fraction(epsilon, "epsilon", "Explorer")
        self.epsilon = float(epsilon)
        self.candidates, self.tiers = candidates, tiers
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, greedy: int, feasible: list[bool] | None = None) -> tuple[int, float, bool]:
        """(the candidate to use, its propensity, whether it was drawn at random). The draw is
        uniform over the candidates that fit the request's SLA (all of them when none or no SLA),
        the same set the policy chose ``greedy`` from."""
        m = len(self.candidates)
        allowed = [k for k in range(m) if feasible is None or feasible[k]] or list(range(m))
        with self._lock:
            explore = self.epsilon > 0 and self._random.random() < self.epsilon
            pick = allowed[self._random.randrange(len(allowed))] if explore else greedy
        propensity = (1 - self.epsilon) * (pick == greedy) + self.epsilon / len(allowed)
        return pick, propensity, pick != greedy


class DecisionLog:
    """Appends one JSON line per decision to ``path`` (thread-safe; flushed per line). An existing
    file is appended to, never truncated. Logging never fails a decision: a line that cannot be
    written (the log closed, the disk full) is counted in ``dropped`` and a warning is logged once."""

    def __init__(self, path: str | os.PathLike[str], log_prompts: bool = False) -> None:
        self.path = Path(path)
        self.log_prompts = log_prompts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open, closed by close()
        self._lock = threading.Lock()
        self.dropped = 0

    def record(self, request: Request, decision: Decision, request_id: Any = None) -> dict[str, Any]:
        """The log line for one decision (a dict)."""
        line: dict[str, Any] = {
            "schema_version": LOG_SCHEMA_VERSION,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "prompt_sha256": hashlib.sha256(request.prompt.encode("utf-8", "surrogatepass")).hexdigest(),
        }
        if self.log_prompts:
            line["prompt"] = request.prompt
        line |= {
            "latency_sla_ms": request.latency_sla_ms, "has_schema": request.output_schema is not None,
            "signals": dict(decision.signals), "probabilities": dict(decision.probabilities), "model": decision.model,
            "tier": decision.tier, "source": decision.source, "fallback": decision.fallback,
            "greedy_model": decision.greedy_model or decision.model, "explored": decision.explored,
            "propensity": decision.propensity, "bundle_id": decision.bundle_id,
        }
        return line

    def write(self, request: Request, decision: Decision, request_id: Any = None) -> None:
        text = json.dumps(self.record(request, decision, request_id)) + "\n"  # ASCII: any prompt text survives
        with self._lock:
            try:
                self._file.write(text)
                self._file.flush()
            except (OSError, ValueError) as exc:  # ValueError: written after close
                self.dropped += 1
                if self.dropped == 1:
                    logging.getLogger("tierroute.serving").warning(
                        "decision log %s: a line could not be written (%s); decisions go on, lines are dropped and counted",
                        self.path, exc)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
