"""The proxy's sampled LLM judge (opt-in: ``tierroute serve --proxy ... --judge MODEL
--judge-sample 0.02 --judge-budget 5``): an automatic outcome signal for requests nobody grades.

A seeded ``sample`` share of the routed calls that got a 200 answer is sent, after the caller has
its answer (a streamed one: the text of its deltas, once the whole stream went out; a stream cut
short is not graded), to the catalogue candidate ``model`` with a grading prompt; the first
number in [0, 1] of its reply is the quality. The result joins the call's decision-log line as
``auto_feedback`` with ``source: "judge"`` (read by ``tierroute outcomes`` like posted feedback, a
person's grade outranking it). Spending is capped: a call is made only while the judge's spend so
far plus this call's estimated price (catalogue price x the prompt's characters / 4 and 8 output
tokens) stays within ``budget_usd``; the spend counts the real usage when the judge reports it.
Calls that fail or whose reply holds no score are counted (``failed``), never raised.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from tierroute._params import check_fraction, check_number
from tierroute.errors import ConfigError
from tierroute.models.catalogue import Catalogue
from tierroute.request import messages_to_prompt
from tierroute.safejson import loads as safe_loads

__all__ = ["JudgeConfig", "Judge", "parse_score", "JUDGE_PROMPT"]

JUDGE_PROMPT = (
    "You grade an AI assistant's answer to a request. Reply with one number between 0 and 1 and nothing "
    "else: 1 if the answer is correct and complete, 0 if it is wrong, in between for partly right.\n\n"
    "Request:\n{request}\n\nAnswer:\n{answer}"
)
_SCORE = re.compile(r"(?<![\d.])(0(?:\.\d+)?|1(?:\.0+)?|\.\d+)(?![\d.])")
_MAX_CHARS = 8000  # of the request and of the answer each, in the grading prompt


def parse_score(text: str | None) -> float | None:
    """The first number in [0, 1] of ``text`` (None when there is none).

    >>> parse_score("Score: 0.8"), parse_score("1"), parse_score("seven")
    (0.8, 1.0, None)
    """
    match = _SCORE.search(text or "")
    return None if match is None else float(match.group(1))


@dataclass(frozen=True)
class JudgeConfig:
    """``model``: the catalogue candidate that grades (it needs a ``base_url``); ``sample``: the
    share of routed calls graded; ``budget_usd``: the most the judge may spend in this process's
    life; ``seed`` seeds the sampling."""

    model: str
    sample: float = 0.02
    budget_usd: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check_fraction(self.sample, "sample", "JudgeConfig")
        check_number(self.budget_usd, "budget_usd", "JudgeConfig", 0.0)


class Judge:
    """Samples calls and grades them; ``spent``, ``graded``, ``failed`` and ``over_budget`` say
    what it did (one instance per service, its state that service's own)."""

    def __init__(self, config: JudgeConfig, catalogue: Catalogue, keys: dict[str, str]) -> None:
        if catalogue.missing([config.model]) or not catalogue.candidate(config.model).base_url:
            known = ", ".join(c.model for c in catalogue.candidates if c.base_url) or "(none has a base_url)"
            raise ConfigError(
                f"The judge model {config.model!r} is not a candidate with a base_url in catalogue "
                f"{catalogue.name!r}; expected one of {known}. Pass --judge with one of them."
            )
        self.config = config
        self.candidate = catalogue.candidate(config.model)
        self.key = keys.get(config.model)
        self._random = random.Random(config.seed)
        self.spent = 0.0
        self.graded = self.failed = self.over_budget = 0

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "sample": self.config.sample,
            "budget_usd": self.config.budget_usd,
            "spent_usd": round(self.spent, 8),
            "graded": self.graded,
            "failed": self.failed,
            "over_budget": self.over_budget,
        }

    def sampled(self) -> bool:
        """Whether to grade this call (drawn first, so the sample does not depend on the budget)."""
        return self.config.sample > 0 and self._random.random() < self.config.sample

    def _prompt(self, fields: dict[str, Any], answer: str) -> str:
        try:
            request = messages_to_prompt(fields.get("messages"))
        except Exception:  # noqa: BLE001 - it was routed, so it reads; the raw form otherwise
            request = json.dumps(fields.get("messages"), default=str)
        return JUDGE_PROMPT.format(request=request[:_MAX_CHARS], answer=answer[:_MAX_CHARS])

    async def grade(self, client: Any, fields: dict[str, Any], answer: str | None) -> dict[str, Any] | None:
        """The ``auto_feedback`` entry for one answer, or None (no answer, over budget, failed)."""
        if answer is None:
            return None
        prompt = self._prompt(fields, answer)
        if self.spent + self.candidate.cost(len(prompt) // 4, 8) > self.config.budget_usd:
            self.over_budget += 1
            return None
        headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {self.key}"} if self.key else {})
        body = {"model": self.config.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, "temperature": 0}
        url = f"{self.candidate.base_url.rstrip('/')}/chat/completions"  # type: ignore[union-attr]
        try:
            response = await client.post(url, content=json.dumps(body).encode(), headers=headers)
            reply = safe_loads(response.content, max_depth=64) if response.status_code == 200 else None
        except Exception:  # noqa: BLE001 - a judge's failure (network, not JSON) never touches the call
            reply = None
        usage = reply.get("usage") if isinstance(reply, dict) else None
        tokens = (usage.get("prompt_tokens"), usage.get("completion_tokens")) if isinstance(usage, dict) else (None, None)
        if all(isinstance(t, int) and t >= 0 for t in tokens):
            cost = self.candidate.cost(*tokens)  # type: ignore[arg-type]
        else:
            cost = self.candidate.cost(len(prompt) // 4, 8) if reply is not None else 0.0
        self.spent += cost
        choices = reply.get("choices") if isinstance(reply, dict) else None
        text = None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            text = message.get("content") if isinstance(message, dict) else None
        score = parse_score(text if isinstance(text, str) else None)
        if score is None:
            self.failed += 1
            return None
        self.graded += 1
        return {"source": "judge", "quality": score, "correct": score >= 0.5, "judge": self.config.model, "judge_cost_usd": round(cost, 10)}
