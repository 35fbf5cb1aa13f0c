"""Progress for long jobs: stage lines and progress bars on stderr for the CLI, nothing at all for
``--json`` runs and library callers.

Every long-running function takes ``progress: Progress | None``. ``None`` and ``Progress(enabled=False)``
are silent; a plain callable taking one message string is accepted too (stage lines only).

    progress = Progress()                       # the CLI's: writes to stderr
    progress("ingesting outcomes")              # a stage line
    with progress.bar(6, "fitting") as step:    # a bar (tqdm when installed, else nothing)
        for fold in range(6):
            ...
            step()                              # one unit done (step(n) for n units)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Progress", "stage", "bar"]

Step = Callable[..., None]


class Progress:
    """Stage lines (``... message``) and tqdm bars on ``stream`` (default: stderr)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"... {message}", file=self._out(), flush=True)

    @contextmanager
    def bar(self, total: int, desc: str, unit: str = "it") -> Iterator[Step]:
        """Yields ``step(n=1)``; shows a bar of ``total`` units while the block runs."""
        if not self.enabled:
            yield _no_step
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # no bar library: the stage line is all there is
            self(desc)
            yield _no_step
            return
        with tqdm(total=total, desc=desc, unit=unit, file=self._out(), leave=True, dynamic_ncols=True, mininterval=0.2) as shown:
            yield lambda n=1: shown.update(n)


def _no_step(n: int = 1) -> None:
    """A step counter that counts nothing (silent progress)."""


def stage(progress: Progress | Callable[[str], None] | None, message: str) -> None:
    """Report a stage on whatever progress the caller passed (None: nothing)."""
    if progress is not None:
        progress(message)


@contextmanager
def bar(progress: Any, total: int, desc: str, unit: str = "it") -> Iterator[Step]:
    """``progress.bar(...)`` when ``progress`` has bars; otherwise a silent step counter."""
    if isinstance(progress, Progress):
        with progress.bar(total, desc, unit) as step:
            yield step
    else:
        yield _no_step
