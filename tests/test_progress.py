"""tierroute.progress: stage lines and bars for the CLI, silence for --json and library calls."""

from __future__ import annotations

import io

from tierroute.progress import Progress, bar, stage


def test_stage_lines_go_to_the_stream() -> None:
    stream = io.StringIO()
    progress = Progress(stream=stream)
    progress("ingesting outcomes")
    stage(progress, "fitting")
    assert stream.getvalue() == "... ingesting outcomes\n... fitting\n"


def test_a_disabled_progress_writes_nothing() -> None:
    stream = io.StringIO()
    progress = Progress(enabled=False, stream=stream)
    progress("hidden")
    with progress.bar(3, "hidden bar") as step:
        step()
        step(2)
    assert stream.getvalue() == ""


def test_a_bar_counts_its_steps() -> None:
    stream = io.StringIO()
    with Progress(stream=stream).bar(4, "folds", unit="fold") as step:
        step()
        step(3)
    shown = stream.getvalue()
    assert "folds" in shown and "4/4" in shown


def test_helpers_accept_none_and_plain_callables() -> None:
    said: list[str] = []
    stage(None, "nothing happens")
    stage(said.append, "a plain callable gets stage lines")
    with bar(said.append, 2, "but no bar") as step:
        step()
    with bar(None, 2, "nor here") as step:
        step()
    assert said == ["a plain callable gets stage lines"]
