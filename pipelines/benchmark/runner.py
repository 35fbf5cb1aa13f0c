"""The inside of ``tierroute benchmark`` (:mod:`~tierroute.pipelines.benchmark.job` is its front):
:func:`prepare` checks everything that can be checked before money is spent; :func:`execute` runs
the prompt x candidate pairs on one event loop, one worker per allowed in-flight call per candidate,
against the cache and the budget, and returns the outcome rows and the summary.

Every model called has one semaphore of its allowed in-flight calls, shared by its candidate calls
and its judge calls, so a judge that is also a candidate never exceeds that candidate's limit.
Every new call holds a reservation of its worst case while in flight; an attempt the provider may
have billed without answering (:data:`~tierroute.pipelines.benchmark.client.MAY_BE_BILLED`) is booked
at that worst case, and a retry after it needs a fresh reservation, so no in-flight call can carry
the run past its cap."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tierroute.errors import ConfigError
from tierroute.models.catalogue import Candidate, Catalogue, load_catalogue
from tierroute.pipelines.benchmark.callcache import CallCache, cache_key
from tierroute.pipelines.benchmark.client import MAY_BE_BILLED, CallStats, CompletionError, RetryPolicy, parse_completion, post_chat
from tierroute.pipelines.benchmark.prompts import PromptItem, PromptSet, load_prompts
from tierroute.pipelines.benchmark.report import Answer, Failure, Scored, make_row, summarize
from tierroute.progress import bar
from tierroute.request import messages_to_prompt
from tierroute.serving.upstreams import read_api_keys

__all__ = ["Plan", "prepare", "execute", "plan_pairs"]


@dataclass(frozen=True)
class Plan:
    """A checked run: the config, its catalogue, prompts, candidates, judge, headers and pairs."""

    config: Any  # BenchmarkConfig
    catalogue: Catalogue
    prompts: PromptSet
    candidates: tuple[Candidate, ...]
    judge: Candidate | None
    headers: Mapping[str, Mapping[str, str]]
    pairs: tuple[tuple[int, int], ...]
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def concurrency(self, model: str) -> int:
        return dict(self.config.model_concurrency).get(model, self.config.concurrency)

    @staticmethod
    def dumps(row: Mapping[str, Any]) -> str:
        return json.dumps(row, ensure_ascii=False)


def plan_pairs(prompt_ids: list[str], models: list[str], fraction: float, seed: int) -> list[tuple[int, int]]:
    """(prompt index, model index) pairs to run: all of them, or per prompt the
    ``max(1, round(fraction * len(models)))`` models that rank first by sha256(seed, prompt id,
    model), a draw that does not depend on the file's order or on other prompts."""
    k = len(models) if fraction >= 1.0 else max(1, round(fraction * len(models)))
    pairs: list[tuple[int, int]] = []
    for i, pid in enumerate(prompt_ids):
        order: list[int] = list(range(len(models)))
        if k < len(models):
            rank = {j: hashlib.sha256(f"{seed}\0{pid}\0{models[j]}".encode()).hexdigest() for j in order}
            order = sorted(sorted(order, key=rank.__getitem__)[:k])
        pairs.extend((i, j) for j in order)
    return pairs


def _first(items: list[PromptItem], scorer: str) -> tuple[int, str]:
    using = [i for i in items if i.scorer == scorer]
    return len(using), (using[0].id if using else "")


def prepare(config: Any, env: Mapping[str, str]) -> Plan:
    """Load and check the catalogue, the prompts, the scorers' needs and the API keys."""
    catalogue = load_catalogue(config.catalogue)
    names = list(dict.fromkeys(config.models)) or [c.model for c in catalogue.candidates]
    candidates = [catalogue.candidate(m) for m in names]
    no_url = [c.model for c in candidates if not c.base_url]
    if no_url:
        raise ConfigError(
            f"Candidate(s) {', '.join(no_url)} of catalogue {catalogue.name!r} have no base_url, so the benchmark cannot "
            'call them. Add base_url = "https://.../v1" (and api_key_env) to their [[candidates]], or pass --models '
            "to leave them out."
        )
    stray = [m for m, _ in config.model_concurrency if m not in names]
    if stray:
        raise ConfigError(
            f"--model-concurrency names {', '.join(stray)}, which this run does not ask; "
            f"the run asks {', '.join(names)}. Fix the name or drop the option."
        )
    prompts = load_prompts(config.prompts, config.max_bad_prompts)
    items = list(prompts.items)
    n_code, first_code = _first(items, "code")
    if n_code and not config.allow_code_execution:
        raise ConfigError(
            f"{n_code} prompt(s) of {config.prompts!r} use the 'code' scorer (first: {first_code!r}), which runs "
            "model-written code on this machine. Pass --allow-code-execution to run it (inside a disposable "
            "container or VM), or remove those prompts."
        )
    judge = None
    n_judge, first_judge = _first(items, "judge")
    if n_judge and not config.judge_model:
        raise ConfigError(
            f"{n_judge} prompt(s) of {config.prompts!r} use the 'judge' scorer (first: {first_judge!r}) but no judge "
            "model was given. Pass --judge MODEL (a catalogue candidate with a base_url)."
        )
    if config.judge_model:
        judge = catalogue.candidate(config.judge_model)
        if not judge.base_url:
            raise ConfigError(
                f"The judge model {judge.model!r} has no base_url in catalogue {catalogue.name!r}. "
                'Add base_url = "https://.../v1" to its [[candidates]] entry, or pick another judge.'
            )
    callees = [*candidates, *([judge] if judge else [])]
    bad_url = [f"{c.model} ({c.base_url!r})" for c in callees if not str(c.base_url).startswith(("http://", "https://"))]
    if bad_url:
        raise ConfigError(
            f"base_url must start with http:// or https://; got {', '.join(bad_url)} in catalogue "
            f'{catalogue.name!r}. Write the endpoint\'s full URL, e.g. "https://api.example.com/v1".'
        )
    keys = read_api_keys(callees, env)
    headers = {
        c.model: {"content-type": "application/json"} | ({"authorization": f"Bearer {keys[c.model]}"} if c.model in keys else {})
        for c in callees
    }
    pairs = plan_pairs([i.id for i in items], names, config.sample_fraction, config.seed)
    return Plan(config, catalogue, prompts, tuple(candidates), judge, headers, tuple(pairs), config.threshold_map())


@dataclass
class _Budget:
    """New spend of this run against the cap: reserve a worst case before a call, settle after."""

    cap: float | None
    spent: float = 0.0
    reserved: float = 0.0
    stopped: bool = False
    worst_case_booked: float = 0.0  # part of ``spent``: attempts booked at their reserved worst case

    def reserve(self, estimate: float) -> bool:
        if self.stopped:
            return False
        if self.cap is not None and self.spent + self.reserved + estimate > self.cap + 1e-12:
            self.stopped = True
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float) -> None:
        self.reserved -= estimate
        self.spent += actual

    def book_worst_case(self, estimate: float) -> None:
        """An attempt that may have been billed without an answer: its reservation becomes spend."""
        self.settle(estimate, estimate)
        self.worst_case_booked += estimate


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class _Runner:
    """The state of one execution (one per run; nothing global)."""

    def __init__(self, plan: Plan, cache: CallCache, client: Any) -> None:
        cfg = plan.config
        self.plan, self.cache, self.client = plan, cache, client
        self.budget = _Budget(cfg.budget_usd)
        self.stats = CallStats()
        self.calls = self.cache_hits = 0
        self.policy = RetryPolicy(cfg.timeout_s, cfg.max_retries, cfg.backoff_base_s, cfg.backoff_cap_s)
        self.rng = random.Random(cfg.seed)
        # float/int as sent and keyed: temperature=0 (Python API) and 0.0 (CLI) must be one cache entry
        self.params = {"max_tokens": int(cfg.max_tokens), "temperature": float(cfg.temperature)}
        # one semaphore per model called, shared by its candidate and judge calls
        callees = [*plan.candidates, *([plan.judge] if plan.judge else [])]
        self.slots = {c.model: asyncio.Semaphore(plan.concurrency(c.model)) for c in callees}
        self.code_slots = asyncio.Semaphore(max(1, (os.cpu_count() or 2) // 2))
        self._counter: Any = None
        self.locks: dict[str, asyncio.Lock] = {}

    def count(self, text: str) -> int:
        if self._counter is None:
            from tierroute.features.tokens import BpeTokenCounter

            self._counter = BpeTokenCounter()
        return int(self._counter.count(text))

    def answer(
        self,
        cand: Candidate,
        messages: list[Any],
        body: Mapping[str, Any],
        latency: float | None,
        attempts: int,
        cached: bool,
        created: str,
    ) -> Answer:
        text, n_in, n_out = parse_completion(body)
        source = "usage"
        if n_in is None or n_out is None:
            n_in, n_out, source = self.count(messages_to_prompt(messages)), self.count(text), "estimated:o200k_base"
        return Answer(text, n_in, n_out, cand.cost(n_in, n_out), source, latency, attempts, cached, created)

    def worst_case(self, cand: Candidate, messages: list[Any], params: Mapping[str, Any]) -> float:
        """The most one attempt can cost: the prompt's tokens + 10% + 8 per message in, max_tokens out."""
        n_in = math.ceil(1.1 * self.count(messages_to_prompt(messages))) + 8 * len(messages)
        return cand.cost(n_in, int(params["max_tokens"]))

    async def call(self, cand: Candidate, messages: list[Any], params: Mapping[str, Any]) -> Answer | Failure | None:
        """One call through the cache, the model's semaphore and the budget; None when the budget
        refuses it. Identical calls wait for each other, so that the second is answered from the
        cache, not paid again."""
        key = cache_key(cand.model, cand.base_url or "", messages, params)
        async with self.locks.setdefault(key, asyncio.Lock()):
            return await self._call(cand, key, messages, params)

    async def _call(self, cand: Candidate, key: str, messages: list[Any], params: Mapping[str, Any]) -> Answer | Failure | None:
        hit = await asyncio.to_thread(self.cache.get, key)  # sqlite off the loop: it must not stall calls in flight
        if hit is not None:
            with contextlib.suppress(CompletionError):  # unreadable stored body: call again
                answer = self.answer(cand, messages, hit.body, hit.latency_ms, 0, True, hit.created)
                self.cache_hits += 1
                return answer
        estimate = self.worst_case(cand, messages, params)
        if not self.budget.reserve(estimate):
            return None
        # the reservation of the attempt in flight; the answer's cost; the worst cases booked so far
        held, spent, booked = estimate, 0.0, 0.0

        def book() -> None:
            nonlocal held, booked
            self.budget.book_worst_case(held)
            booked, held = booked + held, 0.0

        def before_retry(kind: str) -> bool:  # after a failed attempt, before the next
            nonlocal held
            if kind not in MAY_BE_BILLED:  # not billed: the reservation carries over
                return True
            book()  # the provider may bill it: booked, and the next attempt reserved anew
            held = estimate if self.budget.reserve(estimate) else 0.0
            return bool(held)

        def failure(kind: str, detail: str, latency: float | None, attempts: int) -> Failure:
            return Failure(kind, detail, latency, attempts, booked, "reserved_worst_case" if booked else "none")

        try:
            self.calls += 1
            url = f"{(cand.base_url or '').rstrip('/')}/chat/completions"
            payload = {"model": cand.model, "messages": messages, **params}
            try:
                async with self.slots[cand.model]:
                    got = await post_chat(
                        self.client,
                        url,
                        self.plan.headers[cand.model],
                        payload,
                        self.policy,
                        self.rng,
                        self.stats,
                        before_retry=before_retry,
                    )
            except Exception as exc:  # noqa: BLE001 - whatever the client raises, the pair is an outcome, not a crash
                return failure("client_error", f"{type(exc).__name__}: {str(exc)[:200]}", None, 1)
            if got.body is None:
                if got.kind in MAY_BE_BILLED and held:  # the last attempt, too, may have been billed
                    book()
                return failure(got.kind or "unknown", got.detail or "", got.latency_ms, got.attempts)
            try:
                answer = self.answer(cand, messages, got.body, got.latency_ms, got.attempts, False, _now())
            except CompletionError as exc:
                return Failure(exc.kind, exc.detail, got.latency_ms, got.attempts)
            spent = answer.cost
            usage = answer.source == "usage"
            await asyncio.to_thread(  # a commit (fsync) per call: on the loop it would inflate measured latencies
                self.cache.put,
                key,
                cand.model,
                cand.base_url or "",
                got.body,
                answer.input_tokens if usage else None,
                answer.output_tokens if usage else None,
                got.latency_ms or 0.0,
                answer.created,
            )
            return answer
        finally:
            self.budget.settle(held, spent)

    async def score(self, item: PromptItem, answer: Answer) -> Scored | None:
        from tierroute.pipelines.benchmark.scorers.registry import score_text

        try:
            if item.scorer == "code":
                from tierroute.pipelines.benchmark.scorers.code_scorer import CodeLimits, score_code

                async with self.code_slots:
                    limits = CodeLimits(timeout_s=self.plan.config.code_timeout_s)
                    got = await asyncio.to_thread(score_code, answer.text, item.reference, limits)
            elif item.scorer == "judge":
                return await self.judge(item, answer)
            else:
                got = score_text(item.scorer, answer.text, item.reference, item.output_schema)
        except Exception as exc:  # noqa: BLE001 - a scorer bug must not end a paid run; the row says what broke
            return Scored(0.0, "", "scorer_error", f"the {item.scorer!r} scorer failed: {type(exc).__name__}: {exc}"[:300])
        return Scored(got.quality, got.detail)

    async def judge(self, item: PromptItem, answer: Answer) -> Scored | None:
        from tierroute.pipelines.benchmark.scorers.judge import JUDGE_MAX_TOKENS, judge_messages, parse_judge_reply

        judge = self.plan.judge
        if judge is None:  # prepare() refuses judge prompts without a judge; this is for direct callers
            raise ConfigError("A 'judge' prompt needs a judge model; pass --judge MODEL.")
        messages = judge_messages(item.prompt, item.reference, answer.text)
        got = await self.call(judge, messages, {"max_tokens": JUDGE_MAX_TOKENS, "temperature": 0.0})
        if got is None:
            return None
        if isinstance(got, Failure):
            return Scored(0.0, "", f"judge_{got.kind}", f"the judge {judge.model!r} failed: {got.detail}", judge.model, got.cost)
        quality = parse_judge_reply(got.text)
        if quality is None:
            return Scored(0.0, "", "judge_unparseable", f"the judge's reply holds no grade: {got.text[:120]!r}", judge.model, got.cost)
        return Scored(quality, f"judge {judge.model}: {10 * quality:g}/10", None, None, judge.model, got.cost)

    async def pair(self, item: PromptItem, cand: Candidate) -> dict[str, Any] | None:
        """The outcome row of one prompt x candidate, or None when the budget stopped it."""
        got = await self.call(cand, list(item.messages), self.params)
        if got is None:
            return None
        if isinstance(got, Failure):
            return make_row(item, cand, self.plan.thresholds[item.scorer], failure=got, timestamp=_now())
        scored = await self.score(item, got)
        if scored is None:
            return None
        return make_row(item, cand, self.plan.thresholds[item.scorer], answer=got, scored=scored, timestamp=got.created)


async def execute(plan: Plan, progress: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every planned pair; return the rows (prompt x catalogue order) and the summary."""
    import httpx

    rows: dict[tuple[int, int], dict[str, Any]] = {}
    queues = {j: deque(p for p in plan.pairs if p[1] == j) for j in range(len(plan.candidates))}
    with CallCache(plan.config.cache) as cache:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=plan.config.timeout_s, limits=limits) as client:
            runner = _Runner(plan, cache, client)
            with bar(progress, len(plan.pairs), "benchmarking", unit="pair") as step:

                async def worker(queue: deque[tuple[int, int]]) -> None:
                    while queue:
                        i, j = queue.popleft()
                        row = await runner.pair(plan.prompts.items[i], plan.candidates[j])
                        if row is not None:
                            rows[(i, j)] = row
                        step()

                async with asyncio.TaskGroup() as group:
                    for j, queue in queues.items():
                        for _ in range(plan.concurrency(plan.candidates[j].model)):
                            group.create_task(worker(queue))
    ordered = [rows[k] for k in sorted(rows)]
    counts = {
        "calls_made": runner.calls,
        "requests_sent": runner.stats.requests,
        "retries": runner.stats.retries,
        "cache_hits": runner.cache_hits,
        "spent_usd": runner.budget.spent,
        "stopped_by_budget": runner.budget.stopped,
        "worst_case_booked_usd": runner.budget.worst_case_booked,
    }
    return ordered, summarize(plan, ordered, counts)
