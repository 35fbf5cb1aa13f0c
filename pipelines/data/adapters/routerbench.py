"""RouterBench wide tables: one row per prompt, a score column and a ``<model>|total_cost`` column
per model. Reads the CSV layout of ``../shared/data/routerbench`` and the published pickle
(``routerbench_0shot.pkl``: a pandas DataFrame with the same columns)."""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tierroute.pipelines.data.adapters.base import RawRow, iter_csv, read_csv_header

__all__ = ["RouterBenchAdapter", "routerbench_models", "routerbench_prompt_text"]

_COST = "|total_cost"
_RESPONSE = "|model_response"
_META = {"", "Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}


def routerbench_models(columns: list[str]) -> list[str]:
    """The model names of a RouterBench header: score columns that have a cost column beside them."""
    names = set(columns)
    return [c for c in columns if c not in _META and "|" not in c and c + _COST in names]


def routerbench_prompt_text(value: object) -> str:
    """RouterBench stores prompts as a stringified Python list: ``"['text']"``."""
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
        if isinstance(parsed, (list, tuple)):
            return "\n".join(str(v) for v in parsed)
    return "" if value is None else str(value)


def _number(value: object, empty: object = None) -> object:
    """CSV text to float; an empty cell becomes ``empty`` (NaN for a score: "no score recorded")."""
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return empty
        if text.lower() == "nan":
            return math.nan
        try:
            return float(text)
        except ValueError:
            return value
    return value


class RouterBenchAdapter:
    """Melts a wide RouterBench table into long outcome rows (request_id = ``sample_id``,
    task = ``eval_name``, quality = the 0/1 score, cost_usd = ``<model>|total_cost``)."""

    name = "routerbench"

    def sniff(self, path: Path) -> bool:
        if path.suffix in (".pkl", ".pickle"):
            return True
        header = read_csv_header(path) if path.suffix == ".csv" else []
        return "sample_id" in header and bool(routerbench_models(header))

    def rows(self, path: Path) -> Iterator[RawRow]:
        if path.suffix in (".pkl", ".pickle"):
            yield from self._pickle_rows(path)
            return
        header = read_csv_header(path)
        models = routerbench_models(header)
        for line, row, issue, detail in iter_csv(path):
            yield from self._melt(row, models, f"{path.name}:{line}", issue, detail)

    def _pickle_rows(self, path: Path) -> Iterator[RawRow]:
        import pandas as pd  # train extra; only this format needs it

        # Pickles can run code when loaded: only open files you trust (the published RouterBench
        # pickles are plain DataFrames).
        frame = pd.read_pickle(path)
        if isinstance(frame, Mapping):
            frame = pd.DataFrame(frame)
        models = routerbench_models([str(c) for c in frame.columns])
        for i, row in enumerate(frame.to_dict(orient="records")):
            yield from self._melt(row, models, f"{path.name}:row {i}")

    def _melt(self, row: Mapping[str, Any], models: list[str], where: str, issue: str | None = None, detail: str = "") -> Iterator[RawRow]:
        """One long row per model; a source line the CSV reader flagged (``issue``) is quarantined
        once per model it would have given, so the counts stay per prompt x model."""
        prompt = routerbench_prompt_text(row.get("prompt"))
        for model in models:
            fields = {
                "request_id": row.get("sample_id"),
                "prompt": prompt,
                "task": row.get("eval_name"),
                "model": model,
                "quality": _number(row.get(model), empty=math.nan),
                "cost_usd": _number(row.get(model + _COST)),
            }
            if "_extra_cells" in row:
                fields["_extra_cells"] = row["_extra_cells"]
            yield RawRow(fields, f"{where} [{model}]", issue, detail)
