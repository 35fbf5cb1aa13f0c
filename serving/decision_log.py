"""The decision log and the exploration slice: what retraining on production logs needs.

Production logs usually hold the outcome of the chosen model only. To learn from them (and to
estimate a new policy's value off-policy, :mod:`tierroute.pipelines.evaluation.offpolicy`), every decision
is logged with the probability the serving policy had of making it (``propensity``), and a small
random share of traffic (``epsilon``, default 0) goes to a uniformly drawn candidate so that
every candidate keeps getting outcomes.

    log = DecisionLog("decisions.jsonl")                 # appends; never truncates
    router = Router.load("bundle/", RouterConfig(epsilon=0.05, seed=7), decision_log=log)

One JSON object per line (``schema_version`` 1): ``time``, ``request_id``, ``prompt_sha256``
(``prompt`` too when ``log_prompts``), ``latency_sla_ms``, ``has_schema``, ``signals``,
``probabilities``, ``model``, ``tier``, ``source``, ``fallback``, ``greedy_model`` (the policy's
own choice), ``explored``, ``propensity``, ``bundle_id``, ``objective``, ``expected_cost_usd``; in
proxy mode also ``served_model``, ``upstream_status``, ``attempts``, ``usage``, ``cost_usd`` (usage
x catalogue price), ``latency_ms`` and any automatic outcome signal (``auto_feedback``); with
``log_features`` the request's ``features`` vector and ``feature_spec`` fingerprint (privacy mode:
retraining without prompt text).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import stat
import threading
import weakref
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tierroute import safejson
from tierroute._params import check_fraction
from tierroute.errors import ConfigError
from tierroute.request import Request
from tierroute.serving.decision import Decision

__all__ = ["DecisionLog", "Explorer", "LOG_SCHEMA_VERSION", "MAX_REQUEST_ID_CHARS", "RequestIds", "request_id_for"]

LOG_SCHEMA_VERSION = 1
_TAIL_BLOCK = 1 << 16


#: the longest id a decision keeps as its request_id (and feedback accepts)
MAX_REQUEST_ID_CHARS = 256


class RequestIds:
    """Generated request ids: 32 hex digits (128 bits) from the operating system's CSPRNG, drawn
    256 ids at a time. One ``os.urandom`` call per decision cost the serving path several
    microseconds (the system call disturbs the caches the routing code runs from, far more than
    the call itself takes); a pool spreads that over 256 decisions with the same randomness.
    Thread-safe; a forked child empties its copy of the pool, so two processes never hand out the
    same ids."""

    _BATCH = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._lock = threading.Lock()
        alive = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _emptied(alive()))

    def new(self) -> str:
        with self._lock:
            at = self._at
            if at >= len(self._pool):
                self._pool, at = os.urandom(16 * self._BATCH), 0
            self._at = at + 16
            return self._pool[at : at + 16].hex()


def _emptied(ids: RequestIds | None) -> None:
    if ids is not None:  # the child draws its own pool (the lock is new: no thread holds it here)
        ids._pool, ids._at, ids._lock = b"", 0, threading.Lock()


def request_id_for(item: Any, ids: RequestIds | None = None) -> str | int:
    """The id a decision is known by for feedback: the request's ``id`` when it is a non-empty
    string or an integer of at most ``MAX_REQUEST_ID_CHARS`` characters (kept as sent; feedback may
    send either form), else a generated one (32 hex digits, from ``ids`` when given)."""
    given = item.get("id") if type(item) is dict or isinstance(item, Mapping) else getattr(item, "id", None)
    if isinstance(given, bool) or not isinstance(given, (str, int)):
        return ids.new() if ids is not None else os.urandom(16).hex()
    text = given if isinstance(given, str) else str(given) if given.bit_length() < 900 else ""
    if text.strip() and len(text) <= MAX_REQUEST_ID_CHARS:
        return given
    return ids.new() if ids is not None else os.urandom(16).hex()


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
    """Appends one JSON line per decision to ``path`` (thread-safe; each line is one unbuffered
    ``write``, so what is counted is what reached the file). An existing file is appended to, never
    truncated, except for a torn last line (a crash mid-write): on open, a last line that is not
    whole JSON is moved to ``<path>.torn`` and counted in ``torn``, so the next decision starts on a
    line of its own and readers (``tierroute drift``) never see two lines glued together; a whole
    last line missing only its newline gets the newline. Logging never fails a decision: a line
    that cannot be written (the log closed, the disk full) is counted in ``dropped`` (exactly: a
    partly written line is cut back off, or fenced off and counted in ``torn``) and a warning is
    logged once. One process should append to a log at a time."""

    _what = "decision log"

    def __init__(self, path: str | os.PathLike[str], log_prompts: bool = False, log_features: bool = False) -> None:
        self.path = Path(path)
        self.log_prompts = log_prompts
        self.log_features = log_features  # the router adds each decision's feature vector (privacy mode)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"Cannot open the {self._what} {str(self.path)!r} for appending ({exc.strerror}). Pass a writable file path."
            ) from None
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise ConfigError(
                f"The {self._what} {str(self.path)!r} is not a regular file (a FIFO, device or "
                "socket); expected a JSONL file to append to. Pass a file path."
            )
        self._lock = threading.Lock()
        self._closed = False
        self._fence = False  # a partial line could not be cut back off: start the next one on a new line
        self._warned = False
        self.dropped = 0  # decisions whose line did not reach the file whole
        self.torn = 0  # torn fragments: found at the end of the file on open, or left by a failed write
        self._repair_tail()

    def _repair_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fragment = b""
            position = size
            while position > 0:  # back from the end, block by block, to the last newline
                step = min(_TAIL_BLOCK, position)
                position -= step
                fh.seek(position)
                block = fh.read(step)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    fragment = block[cut + 1 :] + fragment
                    break
                fragment = block + fragment
        if not fragment:
            return
        try:
            whole = isinstance(safejson.loads(fragment, max_depth=16), dict)
        except safejson.UnsafeJSONError:  # not JSON, not UTF-8, too deep: not a line anyone can read
            whole = False
        if whole:  # a complete line without its newline: keep it, end it
            os.write(self._fd, b"\n")
            return
        with open(self.path.with_name(self.path.name + ".torn"), "ab") as sidecar:
            sidecar.write(fragment + b"\n")
        os.ftruncate(self._fd, size - len(fragment))
        self.torn += 1
        logging.getLogger("tierroute.serving").warning(
            "decision log %s: its last line was torn (%d bytes, a crash mid-write?); moved it to %s.torn so the next "
            "decision starts on a line of its own",
            self.path,
            len(fragment),
            self.path.name,
        )

    def record(
        self, request: Request, decision: Decision, request_id: Any = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The log line for one decision (a dict); ``extra`` fields are added (the proxy's upstream
        outcome, the feature vector)."""
        if request_id is None:
            request_id = decision.request_id
        line: dict[str, Any] = {
            "schema_version": LOG_SCHEMA_VERSION,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "prompt_sha256": hashlib.sha256(request.prompt.encode("utf-8", "surrogatepass")).hexdigest(),
        }
        if self.log_prompts:  # the request's content: its text and the schema asked for (retraining needs both)
            line["prompt"] = request.prompt
            line["output_schema"] = request.output_schema
        line |= {
            "latency_sla_ms": request.latency_sla_ms,
            "has_schema": request.output_schema is not None,
            "signals": dict(decision.signals),
            "probabilities": dict(decision.probabilities),
            "model": decision.model,
            "tier": decision.tier,
            "source": decision.source,
            "fallback": decision.fallback,
            "greedy_model": decision.greedy_model or decision.model,
            "explored": decision.explored,
            "propensity": decision.propensity,
            "bundle_id": decision.bundle_id,
            "objective": decision.objective,
            "expected_cost_usd": decision.expected_cost_usd,
        }
        return line | dict(extra or {})

    def features_for(self, bundle: Any, requests: list[Request]) -> list[dict[str, Any]]:
        """Per request, what privacy mode adds to its line: ``features`` (the feature vector the
        bundle's model reads: signals, then the embedding; a missing value as null) and ``feature_spec`` (the
        bundle's FeatureSpec fingerprint, which a retrain must match). Empty dicts when
        ``log_features`` is off or no bundle is served; ``features_error`` when they cannot be had."""
        if not self.log_features or bundle is None or not requests:
            return [{} for _ in requests]
        from tierroute.models.decision import feature_matrix

        spec = bundle.manifest.get("feature_spec_fingerprint")
        try:
            scalar = [bundle.extractor.signals(r).as_vector() for r in requests]
            embedding = None if bundle.encoder is None else bundle.encoder.encode([r.prompt for r in requests])
            rows = feature_matrix(scalar, embedding).tolist()
        except Exception as exc:  # noqa: BLE001 - logging never fails a decision
            return [{"feature_spec": spec, "features_error": f"{type(exc).__name__}: {str(exc)[:200]}"} for _ in requests]
        return [{"features": [None if v != v else v for v in row], "feature_spec": spec} for row in rows]  # NaN: null

    def write(self, request: Request, decision: Decision, request_id: Any = None, extra: Mapping[str, Any] | None = None) -> None:
        """Append the decision's line; never raises (a line that cannot be written is counted)."""
        self.append(self.record(request, decision, request_id, extra))

    def append(self, line: Mapping[str, Any]) -> bool:
        """Append one JSON object as one line (one unbuffered write); False when it could not be
        written (counted in ``dropped``), never raises."""
        data = (json.dumps(line, default=str) + "\n").encode("ascii")  # any prompt survives
        with self._lock:
            if self._closed:
                self._drop("the log is closed")
                return False
            if self._fence:
                data = b"\n" + data
            written = 0
            try:
                while written < len(data):
                    written += os.write(self._fd, data[written:])
            except OSError as exc:
                if written:
                    self._cut_back(written)
                self._drop(exc)
                return False
            self._fence = False
        return True

    def _cut_back(self, written: int) -> None:
        """Remove the ``written`` bytes of a line that failed half way (or fence them off)."""
        try:
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
        except OSError:
            self._fence = True
            self.torn += 1

    def _drop(self, why: object) -> None:
        self.dropped += 1
        if not self._warned:
            self._warned = True
            logging.getLogger("tierroute.serving").warning(
                "%s %s: a line could not be written (%s); serving goes on, lines are dropped and counted", self._what, self.path, why
            )

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._fd)

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
