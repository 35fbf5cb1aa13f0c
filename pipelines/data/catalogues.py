"""Which catalogue prices and tiers a set of outcomes: the one named, else the first built-in that
lists every model, else one read off the outcomes' own costs (so ``tierroute train --data
my.jsonl`` works for models no built-in knows, as long as each row carries its ``cost_usd``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.errors import CatalogueError
from tierroute.models.catalogue import BUILTIN_CATALOGUES, Catalogue, catalogue_from_costs, find_builtin_for, load_catalogue

__all__ = ["pick_catalogue", "DERIVED_CATALOGUE_FILE"]

#: where a run writes a catalogue read off its data (what a retrain or a proxy then loads)
DERIVED_CATALOGUE_FILE = "catalogue.toml"


def pick_catalogue(name: str | None, frame: Any, out_dir: str | Path | None = None) -> tuple[Catalogue, str | None]:
    """(the catalogue, a note when it was read off the data) for an ingested outcome ``frame``
    (columns ``model``, ``cost_usd``, ``correct``, ``prompt``). A catalogue read off the data is
    written to ``out_dir/catalogue.toml`` (when given) and loaded from there, so runs that reuse
    it (retrain) find it. CatalogueError when a named catalogue lacks a model, or when no built-in
    lists the models and some outcome has no cost."""
    models = sorted(frame["model"].unique().tolist())
    catalogue = load_catalogue(name) if name else find_builtin_for(models)
    note = None
    if catalogue is None:
        catalogue = _read_off(frame, models)
        if out_dir is not None:
            path = Path(out_dir) / DERIVED_CATALOGUE_FILE
            path.write_text(catalogue.to_toml(), encoding="utf-8")
            catalogue = load_catalogue(path)
        tiers = "; ".join(f"{t}: {', '.join(c.model for c in catalogue.models_in_tier(t))}" for t in catalogue.tiers)
        where = f" (written to {catalogue.source}; edit it and pass --catalogue to change tiers or prices)" if out_dir else ""
        note = f"no built-in catalogue lists these models: tiers and prices read off the data's costs{where}: {tiers}"
    missing = catalogue.missing(models)
    if missing:
        raise CatalogueError(
            f"Catalogue {catalogue.name!r} has no tier for model(s) {missing}. Add them to the TOML (model, tier, prices) "
            "or pass another --catalogue."
        )
    return catalogue, note


def _read_off(frame: Any, models: list[str]) -> Catalogue:
    from tierroute.features.tokens import make_token_counter

    costs = frame.groupby("model")["cost_usd"]
    unknown = [m for m in models if costs.get_group(m).isna().any()]
    if unknown:
        raise CatalogueError(
            f"No built-in catalogue lists every model in the data ({', '.join(models[:6])}{', ...' if len(models) > 6 else ''}), "
            f"and the outcomes of {unknown[:6]} lack cost_usd, so none can be read off the data. Give every row its "
            f"cost_usd, or pass --catalogue FILE (a TOML mapping each model to a tier and prices) or one of "
            f"{', '.join(BUILTIN_CATALOGUES)}."
        )
    correct = frame.assign(hit=frame["correct"].astype("float64")).groupby("model")["hit"].mean()
    counter = make_token_counter()
    prompts = frame["prompt"].dropna().drop_duplicates()
    tokens = float(np.mean([counter.count(p) for p in prompts])) if len(prompts) else 0.0
    return catalogue_from_costs(
        {m: float(costs.get_group(m).mean()) for m in models},
        {m: _or_zero(correct.get(m, math.nan)) for m in models},  # no graded outcome: accuracy 0
        tokens,
    )


def _or_zero(value: float) -> float:
    return 0.0 if math.isnan(float(value)) else float(value)
