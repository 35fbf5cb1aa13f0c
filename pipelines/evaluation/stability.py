"""Decision stability: does a router change its choice when the prompt changes but its meaning does not?

Each perturbation is a small named function ``(prompt, rng) -> prompt`` that keeps what the request
asks for: the same words with other spacing (``whitespace``), a sentence's first letter in the
other case (``case``), the final punctuation mark dropped or added (``punctuation``), a polite
"Please, " in front (``polite_prefix``), two adjacent letters swapped in one or two words
(``typos``), the system message moved after the next message of a chat prompt (``system_order``;
:func:`tierroute.request.messages_to_prompt` flattens ``messages`` into ``role: content`` lines).
Code (fenced blocks, indented lines) and JSON lines are never touched. A perturbation that has
nothing to change in a prompt returns it unchanged, and that request does not count for it
(``applicable``). Every perturbation is deterministic: its random choices are seeded by
(``seed``, its name, the prompt), so a request is perturbed the same way wherever it is sampled and
for every router judged on it.

:func:`decision_stability` routes a seeded sample of at most ``max_requests`` requests, then each
perturbed copy, with the learned router and with the article's tree (which flips too: token-count
thresholds and keywords), and reports per perturbation and per task the **flip rate** (share of
applicable requests whose chosen candidate changed) and what the flips cost: the accuracy and cost
per query of the perturbed choices minus the original ones, read from the outcome table (every
candidate's outcome is known for a benchmarked request). ``flip_rate`` overall pools every
(request, perturbation) pair; ``any_flip_rate`` is the share of requests that flip under at least one.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tierroute._params import check_int
from tierroute.errors import ConfigError
from tierroute.features.logged import LoggedRequest
from tierroute.request import Request

__all__ = [
    "PERTURBATIONS",
    "StabilityConfig",
    "whitespace",
    "case",
    "punctuation",
    "polite_prefix",
    "typos",
    "system_order",
    "perturb",
    "perturb_requests",
    "perturbed_variants",
    "sample_rows",
    "flip_summary",
    "decision_stability",
    "stability_markdown",
    "stability_metrics",
]

Perturbation = Callable[[str, random.Random], str]
Decide = Callable[[Sequence[Request]], np.ndarray]

_ROLE = re.compile(r"^(system|developer|user|assistant|tool|function): ", re.MULTILINE)
_WORD = re.compile(r"\b[A-Za-z]{4,}\b")


def _prose_lines(prompt: str) -> list[tuple[int, int]]:
    """(line index, first column a perturbation may touch) for the prose lines: not inside a ```
    fence, not indented code, not JSON (a line starting with '{', '[' or '"'); in a chat prompt the
    ``role: `` marker at a line's start is kept out of reach."""
    out, fenced, chat = [], False, _ROLE.match(prompt) is not None
    for i, line in enumerate(prompt.split("\n")):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        role = _ROLE.match(line) if chat else None
        start = role.end() if role is not None else 0
        text = line[start:]
        if fenced or text.startswith(("    ", "\t")) or text.lstrip().startswith(("{", "[", '"')) or not text.strip():
            continue
        out.append((i, start))
    return out


def whitespace(prompt: str, rng: random.Random) -> str:
    """One or two spaces between words of prose doubled, and a trailing newline: the same words."""
    lines = prompt.split("\n")
    spots = [(i, m.start()) for i, start in _prose_lines(prompt) for m in re.finditer(r"(?<=\S) (?=\S)", lines[i]) if m.start() > start]
    for i, at in sorted(rng.sample(spots, min(len(spots), rng.randint(1, 2))), reverse=True):
        lines[i] = lines[i][:at] + " " + lines[i][at:]
    return "\n".join(lines) + "\n"


def case(prompt: str, rng: random.Random) -> str:
    """The first letter of every prose line in the other case ("Classify" -> "classify")."""
    lines = prompt.split("\n")
    for i, start in _prose_lines(prompt):
        m = re.compile(r"[A-Za-z]").search(lines[i], start)
        if m is not None:
            lines[i] = lines[i][: m.start()] + lines[i][m.start()].swapcase() + lines[i][m.start() + 1 :]
    return "\n".join(lines)


def punctuation(prompt: str, rng: random.Random) -> str:
    """The final '.', '?' or '!' dropped, or a '.' added after a final letter or digit; other endings
    (a quote, a brace, code) are left alone."""
    body = prompt.rstrip()
    tail = prompt[len(body) :]
    prose = _prose_lines(prompt)
    if not body or not prose or prose[-1][0] != body.count("\n"):
        return prompt  # the prompt does not end in prose
    if body[-1] in ".?!":
        return body[:-1] + tail
    return body + "." + tail if body[-1].isalnum() else prompt


def polite_prefix(prompt: str, rng: random.Random) -> str:
    """ "Please, " in front of the prompt (of the first user message in a chat prompt), the first
    letter lowered when it starts an ordinary word ("Please, classify ..."; "I" and "ID" stay)."""
    user = re.search(r"^user: ", prompt, re.MULTILINE) if _ROLE.match(prompt) else None
    at = user.end() if user is not None else 0
    rest = prompt[at:]
    if re.match(r"[A-Z][a-z]", rest):
        rest = rest[0].lower() + rest[1:]
    return prompt[:at] + "Please, " + rest


def typos(prompt: str, rng: random.Random) -> str:
    """Two adjacent inner letters swapped in one or two prose words of four letters or more
    ("invoice" -> "inovice"): same length, same letters."""
    lines = prompt.split("\n")
    words = [
        (i, m.start(), m.group())
        for i, start in _prose_lines(prompt)
        for m in _WORD.finditer(lines[i], start)
        if len(set(m.group()[1:-1])) > 1
    ]
    for i, at, word in sorted(rng.sample(words, min(len(words), rng.randint(1, 2))), reverse=True):
        spots = [k for k in range(1, len(word) - 2) if word[k] != word[k + 1]]
        k = rng.choice(spots)
        lines[i] = lines[i][: at + k] + word[k + 1] + word[k] + lines[i][at + k + 2 :]
    return "\n".join(lines)


def _blocks(prompt: str) -> list[str]:
    """A flattened chat prompt cut into its messages (each starting 'role: '); [] when the prompt
    does not start with a role."""
    starts = [m.start() for m in _ROLE.finditer(prompt)]
    if not starts or starts[0] != 0:
        return []
    return [prompt[a:b].rstrip("\n") for a, b in zip(starts, [*starts[1:], len(prompt)])]


def system_order(prompt: str, rng: random.Random) -> str:
    """In a chat prompt, the first system message moved after the message that follows it; the
    other messages keep their order. Prompts without a system message and another message are left alone."""
    blocks = _blocks(prompt)
    first = next((k for k, b in enumerate(blocks) if b.startswith("system: ")), None)
    if first is None or first + 1 >= len(blocks):
        return prompt
    blocks[first], blocks[first + 1] = blocks[first + 1], blocks[first]
    return "\n".join(blocks)


#: The perturbations by name, in report order.
PERTURBATIONS: dict[str, Perturbation] = {
    "whitespace": whitespace,
    "case": case,
    "punctuation": punctuation,
    "polite_prefix": polite_prefix,
    "typos": typos,
    "system_order": system_order,
}


@dataclass(frozen=True)
class StabilityConfig:
    """How decision stability is measured: at most ``max_requests`` requests (a seeded sample; 0
    turns the measurement off), each perturbed by every one of ``perturbations``."""

    max_requests: int = 300
    perturbations: tuple[str, ...] = tuple(PERTURBATIONS)
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.max_requests, "max_requests", "StabilityConfig", 0)
        check_int(self.seed, "seed", "StabilityConfig", 0)
        unknown = [p for p in self.perturbations if p not in PERTURBATIONS]
        if unknown or not self.perturbations:
            raise ConfigError(
                f"The 'perturbations' parameter of StabilityConfig must name some of {list(PERTURBATIONS)}. "
                f"Got {list(self.perturbations)!r} instead (unknown: {unknown})."
            )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "perturbations": list(self.perturbations)}


def perturb(prompt: str, name: str, seed: int = 0) -> str:
    """``prompt`` under the perturbation ``name``, seeded by (seed, name, prompt)."""
    if name not in PERTURBATIONS:
        raise ConfigError(f"Unknown perturbation {name!r}; expected one of {list(PERTURBATIONS)}.")
    return PERTURBATIONS[name](prompt, random.Random(f"{seed}|{name}|{prompt}"))


def perturb_requests(requests: Sequence[Request], name: str, seed: int = 0) -> tuple[list[Request], np.ndarray]:
    """Every request under ``name`` (same schema and SLA) and which ones it changed; an unchanged
    request is passed as it was, so the list lines up with ``requests``. A feature-only request
    (:class:`~tierroute.features.logged.LoggedRequest`: no text to perturb) is passed unchanged."""
    out: list[Request] = []
    changed = np.zeros(len(requests), dtype=bool)
    for i, request in enumerate(requests):
        if isinstance(request, LoggedRequest):
            out.append(request)
            continue
        prompt = perturb(request.prompt, name, seed)
        if prompt == request.prompt:
            out.append(request)
            continue
        copy = Request(prompt, request.output_schema, request.latency_sla_ms)
        object.__setattr__(copy, "schema_summary", request.schema_summary)  # the schema did not change
        out.append(copy)
        changed[i] = True
    return out, changed


def sample_rows(n: int, config: StabilityConfig) -> np.ndarray:
    """The rows measured: all ``n`` when they are at most ``max_requests``, else a seeded sample (sorted)."""
    if n <= config.max_requests:
        return np.arange(n)
    return np.sort(np.random.default_rng(config.seed).choice(n, config.max_requests, replace=False))


def perturbed_variants(requests: Sequence[Request], config: StabilityConfig) -> dict[str, tuple[list[Request], np.ndarray]]:
    """Every configured perturbation of ``requests``: name -> (perturbed requests, changed mask);
    made once and passed to :func:`flip_summary` for each router judged on the same requests."""
    return {name: perturb_requests(requests, name, config.seed) for name in config.perturbations}


def _decide_checked(decide: Decide, requests: Sequence[Request], label: str) -> np.ndarray:
    picks = np.asarray(decide(requests))
    if picks.shape != (len(requests),):
        raise ConfigError(
            f"The {label} returned decisions of shape {picks.shape} for {len(requests)} requests; expected "
            "one candidate index per request. Check its decide()."
        )
    return picks


def flip_summary(
    decide: Decide,
    requests: Sequence[Request],
    config: StabilityConfig | None = None,
    correct: np.ndarray | None = None,
    cost: np.ndarray | None = None,
    tasks: np.ndarray | None = None,
    label: str = "router",
    variants: Mapping[str, tuple[list[Request], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Flip rates of one decision function over ``requests`` (all of them: sample first) under each
    perturbation. With ``correct`` and ``cost`` ((n, m) outcome tables for the same requests), the
    accuracy and cost-per-query change the perturbed choices cause; with ``tasks``, per task too.
    ``variants``: perturbed requests made once and shared between routers (else made here)."""
    config = config if config is not None else StabilityConfig()
    variants = variants if variants is not None else perturbed_variants(requests, config)
    base = _decide_checked(decide, requests, label)
    rows = np.arange(len(requests))
    flips, changed, acc, spend = {}, {}, {}, {}
    for name, (perturbed, applies) in variants.items():
        picks = _decide_checked(decide, perturbed, label)
        flips[name], changed[name] = (picks != base) & applies, applies
        if correct is not None and cost is not None:
            acc[name] = correct[rows, picks] - correct[rows, base]
            spend[name] = cost[rows, picks] - cost[rows, base]

    def block(sel: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
        pairs = sum(int((changed[k] & sel).sum()) for k in names)
        out: dict[str, Any] = {
            "applicable": pairs,
            "flip_rate": None if not pairs else sum(int((flips[k] & sel).sum()) for k in names) / pairs,
        }
        if acc:
            out["accuracy_delta"] = None if not pairs else float(sum(np.nansum(acc[k][changed[k] & sel]) for k in names) / pairs)
            out["cost_per_query_delta"] = None if not pairs else float(sum(np.nansum(spend[k][changed[k] & sel]) for k in names) / pairs)
        return out

    everything = np.ones(len(requests), dtype=bool)
    any_flip = np.any([flips[k] for k in flips], axis=0) if flips else everything & False
    result = {
        **block(everything, list(flips)),
        "any_flip_rate": float(any_flip.mean()) if len(requests) else None,
        "per_perturbation": {k: block(everything, [k]) for k in flips},
    }
    if tasks is not None:
        result["per_task"] = {str(t): {"requests": int((tasks == t).sum()), **block(tasks == t, list(flips))} for t in np.unique(tasks)}
    return result


def decision_stability(
    router: Any, data: Any, catalogue: Any, config: StabilityConfig | None = None, tree: Any = None
) -> dict[str, Any] | None:
    """Flip rates of ``router`` (anything with ``decide(requests) -> candidate indices``) and of the
    article's tree (``tree``, default thresholds when None) on a sample of ``data`` (a RoutingData:
    its requests, tasks and per-candidate ``correct`` / ``cost``), with the accuracy and cost
    changes. None when ``config.max_requests`` is 0 (off) or there are no requests."""
    from tierroute.models.heuristic import tree_picks

    config = config if config is not None else StabilityConfig()
    if config.max_requests == 0 or data.n_requests == 0:
        return None
    clock = time.perf_counter()
    sub = data.subset(sample_rows(data.n_requests, config))
    variants = perturbed_variants(sub.requests, config)
    common = {"config": config, "correct": sub.correct, "cost": sub.cost, "tasks": sub.tasks, "variants": variants}
    learned = flip_summary(router.decide, sub.requests, label="learned router", **common)
    heuristic = flip_summary(
        lambda requests: tree_picks(requests, catalogue, sub.candidates, tree), sub.requests, label="heuristic tree", **common
    )
    return {
        "requests": sub.n_requests,
        "of_requests": data.n_requests,
        "config": config.to_dict(),
        "definition": "flip rate: share of (request, perturbation) pairs whose chosen candidate changed, over the "
        "pairs the perturbation changed; deltas: perturbed minus original choice, same requests",
        "learned": learned,
        "heuristic": heuristic,
        "seconds": round(time.perf_counter() - clock, 3),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def stability_markdown(stability: Mapping[str, Any]) -> list[str]:
    """report.md lines: one row per perturbation (and all), then one per task."""
    learned, tree = stability["learned"], stability["heuristic"]
    lines = [
        f"Decision stability under meaning-preserving prompt perturbations ({stability['requests']:,} of "
        f"{stability['of_requests']:,} requests; flip rate = share of perturbed requests whose choice changed; "
        "deltas = perturbed minus original choice):",
        "",
        "| perturbation | requests changed | learned flip rate | learned accuracy delta | learned cost/query delta | "
        "heuristic flip rate | heuristic accuracy delta |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in [*learned["per_perturbation"].items(), ("all", learned)]:
        other = tree if name == "all" else tree["per_perturbation"][name]
        lines.append(
            f"| {name} | {row['applicable']} | {_fmt(row['flip_rate'], '.3f')} | {_fmt(row.get('accuracy_delta'), '+.4f')} | "
            f"{_fmt(row.get('cost_per_query_delta'), '+.3g')} | {_fmt(other['flip_rate'], '.3f')} | "
            f"{_fmt(other.get('accuracy_delta'), '+.4f')} |"
        )
    lines.append(
        f"\nRequests flipping under at least one perturbation: learned {_fmt(learned['any_flip_rate'], '.3f')}, "
        f"heuristic {_fmt(tree['any_flip_rate'], '.3f')}."
    )
    if learned.get("per_task"):
        lines += ["", "| task | requests | learned flip rate | heuristic flip rate |", "|---|---|---|---|"]
        for task, row in learned["per_task"].items():
            lines.append(
                f"| {task} | {row['requests']} | {_fmt(row['flip_rate'], '.3f')} | {_fmt(tree['per_task'][task]['flip_rate'], '.3f')} |"
            )
    return lines


def stability_metrics(stability: Mapping[str, Any] | None) -> dict[str, float]:
    """Flat MLflow metrics: ``stability.flip_rate``, ``stability.any_flip_rate``, the deltas, each
    perturbation's flip rate, and the heuristic's (``stability.heuristic.*``); None figures are left out."""
    if not stability:
        return {}
    out: dict[str, float] = {}
    for prefix, block in (("stability", stability["learned"]), ("stability.heuristic", stability["heuristic"])):
        for key in ("flip_rate", "any_flip_rate", "accuracy_delta", "cost_per_query_delta"):
            if isinstance(block.get(key), (int, float)):
                out[f"{prefix}.{key}"] = float(block[key])
        for name, row in block["per_perturbation"].items():
            if row["flip_rate"] is not None:
                out[f"{prefix}.flip_rate.{name}"] = float(row["flip_rate"])
    return out
