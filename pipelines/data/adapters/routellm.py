"""RouteLLM's cached per-model correctness files (GPT-4-1106 vs Mixtral-8x7B).

- MMLU: ``mmlu_<subject>.csv`` with ``prompt`` and one boolean column per model;
- GSM8K: ``gsm8k_responses.csv`` with ``prompt``, one boolean column per model and
  ``<model>_response`` columns.

The files hold no cost, so cost_usd = the catalogue's per-token prices x token counts: prompt tokens
in (o200k BPE), response tokens out where the response is stored (GSM8K), else 1 token out (MMLU's
answer is one letter). Prompts listed in a ``contaminated_prompts.jsonl`` beside the file (or one
folder up) are quarantined with reason ``contaminated``, as RouteLLM excludes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from tierroute.errors import DataFormatError
from tierroute.features.tokens import BpeTokenCounter
from tierroute.models.catalogue import Catalogue, builtin_catalogue
from tierroute.pipelines.data.adapters.base import RawRow, iter_csv, read_csv_header
from tierroute.pipelines.data.records import prompt_hash

__all__ = ["RouteLLMAdapter", "load_contaminated"]

_RESPONSE = "_response"
_BOOLS = {"true", "false", "1", "0", "1.0", "0.0"}


def load_contaminated(folder: Path) -> set[str]:
    """The ``eval_prompt`` texts of ``contaminated_prompts.jsonl`` in ``folder`` or its parent."""
    for candidate in (folder / "contaminated_prompts.jsonl", folder.parent / "contaminated_prompts.jsonl"):
        if candidate.is_file():
            prompts = set()
            with candidate.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        item = json.loads(line)
                        if isinstance(item, dict) and isinstance(item.get("eval_prompt"), str):
                            prompts.add(item["eval_prompt"])
            return prompts
    return set()


class RouteLLMAdapter:
    """Long outcome rows from RouteLLM correctness CSVs. ``catalogue`` prices the calls (default:
    the built-in ``routellm`` catalogue)."""

    name = "routellm"

    def __init__(self, catalogue: Catalogue | None = None, exclude_contaminated: bool = True) -> None:
        self.catalogue = catalogue
        self.exclude_contaminated = exclude_contaminated

    @cached_property
    def _prices(self) -> Catalogue:
        return self.catalogue if self.catalogue is not None else builtin_catalogue("routellm")

    @cached_property
    def _counter(self) -> BpeTokenCounter:
        return BpeTokenCounter()

    @staticmethod
    def _models(header: list[str]) -> list[str]:
        names = set(header)
        return [c for c in header if c != "prompt" and not c.endswith(_RESPONSE) and "|" not in c and c in names]

    def sniff(self, path: Path) -> bool:
        if path.suffix != ".csv":
            return False
        header = read_csv_header(path)
        return bool(header) and header[0] == "prompt" and bool(self._models(header)) and not any("|total_cost" in c for c in header)

    def _task(self, path: Path) -> str:
        stem = path.stem
        if stem.startswith("mmlu"):
            return "mmlu"
        return stem.removesuffix("_responses")

    def check_prices(self, path: Path) -> list[str]:
        """The file's model columns; DataFormatError if the catalogue cannot price one of them."""
        models = self._models(read_csv_header(path))
        missing = [m for m in models if m not in {c.model for c in self._prices.candidates}]
        if missing:
            raise DataFormatError(
                f"{path.name}: no price for model(s) {missing} in catalogue {self._prices.name!r}, and RouteLLM "
                "files carry no cost. Pass --catalogue with a TOML that lists them."
            )
        return models

    def rows(self, path: Path) -> Iterator[RawRow]:
        models = self.check_prices(path)
        contaminated = load_contaminated(path.parent) if self.exclude_contaminated else set()
        task = self._task(path)
        for line, row, issue, detail in iter_csv(path):
            prompt = row.get("prompt") or ""
            where = f"{path.name}:{line}"
            in_tokens = self._counter.count(prompt)
            request_id = f"{task}:{prompt_hash(prompt)}"
            for model in models:
                value = (row.get(model) or "").strip()
                response = row.get(model + _RESPONSE)
                out_tokens = self._counter.count(response) if response else 1
                fields = {
                    "request_id": request_id,
                    "prompt": prompt,
                    "task": task,
                    "model": model,
                    "correct": value,
                    "cost_usd": self._prices.candidate(model).cost(in_tokens, out_tokens),
                }
                if issue:  # the CSV reader flagged the source line: quarantined once per model it would give
                    yield RawRow({**fields, "_extra_cells": row.get("_extra_cells")}, f"{where} [{model}]", issue, detail)
                elif prompt in contaminated:
                    yield RawRow(fields, f"{where} [{model}]", "contaminated", "listed in contaminated_prompts.jsonl")
                elif value.lower() not in _BOOLS:
                    yield RawRow(fields, f"{where} [{model}]", "wrong_type", f"correctness must be True/False; got {value!r}")
                else:
                    yield RawRow(fields, f"{where} [{model}]")
