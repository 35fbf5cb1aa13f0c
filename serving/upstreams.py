"""Where a proxy call may go and with which key: the candidates above a chosen one that the proxy
can reach (:func:`upgrade_chain`), and their API keys read once from the environment
(:func:`upstream_keys`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from tierroute.errors import ConfigError
from tierroute.models.catalogue import Candidate, Catalogue

__all__ = ["read_api_keys", "upgrade_chain", "upstream_keys"]


def upstream_keys(catalogue: Catalogue, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{model: API key} for the candidates the proxy can call, read once from ``env`` (default: the
    process environment). ConfigError naming every ``api_key_env`` that is unset or empty."""
    callable_ = [c for c in catalogue.candidates if c.base_url]
    return read_api_keys(callable_, os.environ if env is None else env, f" in catalogue {catalogue.name!r}", " before starting the proxy")


def read_api_keys(candidates: Iterable[Candidate], env: Mapping[str, str], where: str = "", when: str = "") -> dict[str, str]:
    """{model: API key} for those of ``candidates`` that name an ``api_key_env``, read from ``env``;
    ConfigError naming every variable that is unset or empty (and the models it is for). ``where``
    and ``when`` complete the message (" in catalogue 'x'", " before starting the proxy")."""
    keys: dict[str, str] = {}
    unset: dict[str, list[str]] = {}
    for cand in candidates:
        if cand.api_key_env:
            if env.get(cand.api_key_env):
                keys[cand.model] = env[cand.api_key_env]
            else:
                unset.setdefault(cand.api_key_env, []).append(cand.model)
    if unset:
        listing = "; ".join(f"{name} (for {', '.join(models)})" for name, models in unset.items())
        raise ConfigError(
            f"The API key variable(s) named by api_key_env{where} are not set: {listing}. Export them "
            f"(export NAME=...){when}, or remove api_key_env from endpoints that need no key."
        )
    return keys


def upgrade_chain(catalogue: Catalogue, first: str) -> list[str]:
    """``first``, then every candidate above it: same tier and dearer, then higher tiers, each
    cheapest first; only candidates with a ``base_url`` (where the proxy can send a call)."""

    def rank(model: str) -> tuple[int, float, str]:
        c = catalogue.candidate(model)
        return catalogue.tier_rank(c.tier), c.input_per_1k + c.output_per_1k, c.model

    start = rank(first)
    above = sorted((c.model for c in catalogue.candidates if rank(c.model) > start), key=rank)
    return [m for m in (first, *above) if catalogue.candidate(m).base_url]
