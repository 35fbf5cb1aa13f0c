"""The options several command groups share: the one meaning of ``--tracking-uri``."""

from __future__ import annotations

import argparse

import pytest

from tierroute.cli.options import add_tracking_option, tracking_store
from tierroute.errors import ConfigError
from tierroute.tracking_uri import DEFAULT_TRACKING_URI


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_tracking_option(parser, "for the test")
    return parser.parse_args(list(argv))


def test_unset_means_the_environment_then_the_project_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_store(_args()) == DEFAULT_TRACKING_URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert tracking_store(_args()) == "sqlite:///elsewhere.db"
    assert tracking_store(_args("--tracking-uri", "sqlite:///given.db")) == "sqlite:///given.db"


def test_empty_means_no_mlflow_and_commands_that_need_a_store_say_so() -> None:
    assert tracking_store(_args("--tracking-uri", "")) == ""
    with pytest.raises(
        ConfigError,
        match=r"--tracking-uri '' turns MLflow off, but rollback needs an MLflow store\. "
        r"Drop the option to use the default store",
    ):
        tracking_store(_args("--tracking-uri", ""), "rollback")


def test_every_command_documents_the_same_meaning() -> None:
    from tierroute.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    helps = {name: next((a.help for a in sub._actions if "--tracking-uri" in a.option_strings), None) for name, sub in commands.items()}
    with_option = {name: h for name, h in helps.items() if h is not None}
    assert set(with_option) >= {"train", "evaluate", "export", "route", "serve", "promote", "rollback", "retrain"}
    assert all("'' = no MLflow" in h for h in with_option.values())
