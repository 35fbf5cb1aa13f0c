"""Routers and what they route between: the article's heuristic tree (baseline and fallback) and
candidate catalogues. Learned routers land here too; importing this package stays light."""

from tierroute.models.catalogue import BUILTIN_CATALOGUES, Candidate, Catalogue, builtin_catalogue, find_builtin_for, load_catalogue
from tierroute.models.heuristic import NODES, TIERS, HeuristicBatch, HeuristicDecision, HeuristicParams, HeuristicTree

__all__ = [
    "BUILTIN_CATALOGUES",
    "Candidate",
    "Catalogue",
    "builtin_catalogue",
    "find_builtin_for",
    "load_catalogue",
    "NODES",
    "TIERS",
    "HeuristicBatch",
    "HeuristicDecision",
    "HeuristicParams",
    "HeuristicTree",
]
