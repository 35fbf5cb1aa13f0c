"""The scorer registry: every scorer module's ``SCORER_SPECS``, found by the package, so a new
scorer is one new file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierroute.pipelines.benchmark import scorers as package
from tierroute.pipelines.benchmark.scorers.registry import check_reference, default_thresholds, score_text, scorer_names

NEW_SCORER = """
from tierroute.pipelines.benchmark.scorers.base import Score, ScorerSpec

def _check(reference, output_schema=None):
    return str(reference)

SCORER_SPECS = (ScorerSpec("shout", 1.0, _check, lambda response, ref, schema: Score(float(response.isupper()), "caps")),)
"""


def test_the_thresholds_are_stated_for_every_scorer() -> None:
    assert scorer_names() == ("exact", "choice", "numeric", "f1", "json", "code", "judge")
    assert dict(default_thresholds()) == {"exact": 1.0, "choice": 1.0, "numeric": 1.0, "f1": 0.5, "json": 0.5, "code": 1.0, "judge": 0.7}
    with pytest.raises(TypeError):
        default_thresholds()["f1"] = 0.1  # type: ignore[index]


def _with_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])


def test_a_new_scorer_is_one_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _with_module(monkeypatch, tmp_path, "shout_scorer", NEW_SCORER)
    assert scorer_names()[-1] == "shout" and default_thresholds()["shout"] == 1.0
    assert score_text("shout", "YES", check_reference("shout", "x")).quality == 1.0
    assert score_text("shout", "yes", "x").quality == 0.0


def test_two_modules_declaring_one_name_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _with_module(monkeypatch, tmp_path, "second_f1", NEW_SCORER.replace('"shout"', '"f1"'))
    with pytest.raises(RuntimeError, match="Two scorer modules declare the scorer 'f1'; rename one."):
        scorer_names()


def test_an_offline_scorer_needs_a_score_function(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _with_module(
        monkeypatch,
        tmp_path,
        "half_done",
        NEW_SCORER.replace(', lambda response, ref, schema: Score(float(response.isupper()), "caps")', ""),
    )
    with pytest.raises(
        RuntimeError, match="The scorer 'shout' must run in one of .* and have a score function exactly when it runs offline."
    ):
        scorer_names()
