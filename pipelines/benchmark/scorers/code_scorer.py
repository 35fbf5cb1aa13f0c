"""The ``code`` scorer: run the model's code with the prompt's reference tests, pass or fail.

This executes text a model wrote, so a run must ask for it explicitly
(``tierroute benchmark --allow-code-execution``). What is done to contain it:

- a separate ``python -I -B`` process (isolated mode: no user site, no PYTHON* variables, the
  script's folder not on ``sys.path``), an empty environment, stdin closed, in a fresh temporary
  folder that is deleted afterwards;
- a wall-clock timeout, after which its whole process group is killed (and the group is killed
  when the process ends, so nothing it started outlives the run);
- the tests must actually run: an ``exit()`` / ``sys.exit(0)`` / ``unittest.main()`` in the answer
  that ends the process before the reference tests is a failure, not a pass;
- and they must run to their end: the launcher writes a random sentinel (handed to it through a
  pipe, never written into a file the code can read) after the tests return, and only a run that
  exits 0 *and* wrote it passes, so an ``os._exit(0)`` (or a killed interpreter) anywhere in the
  answer or the tests is a failure (this stops early exits, not code written to hunt for the
  sentinel in the launcher's memory: it is no sandbox);
- on POSIX, resource limits set by a small launcher in the child before the model's code runs,
  soft and hard alike so the code cannot raise them: address space (``memory_mb``), CPU seconds,
  file size (16 MiB), no core files. (A launcher rather than ``preexec_fn``, which the Python docs
  call unsafe in a process with threads, as a benchmark run is.)

What is *not* done: no network or filesystem isolation beyond the above. The code runs as you.
Run benchmarks with code scoring inside a disposable container or VM.

Quality is 1.0 when the process exits 0 after the tests ran to their end (every assert held),
else 0.0.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierroute._params import check_int, check_number
from tierroute.pipelines.benchmark.scorers.base import Score, ScorerSpec

__all__ = ["CodeLimits", "extract_code", "score_code", "SCORER_SPECS"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.S)
_LAUNCHER = """\
import os, runpy, sys
sentinel = sys.stdin.readline().strip().encode()  # from the scorer's pipe: in no file the code can read
null = os.open(os.devnull, os.O_RDONLY)  # then stdin is empty, as before: the pipe is not the code's
os.dup2(null, 0)
os.close(null)
sys.stdin = open(0, closefd=False)
_open, _write, _close, done = os.open, os.write, os.close, os.path.abspath("done.txt")
def finished():  # only a run that got here, after the last test, passes
    fd = _open(done, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _write(fd, sentinel)
    _close(fd)
try:
    import resource
except ImportError:  # not POSIX: the timeout is all there is
    resource = None
def cap(name, value):
    limit = getattr(resource, name, None)
    if limit is not None:
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass
cap("RLIMIT_AS", {memory})
cap("RLIMIT_CPU", {cpu})
cap("RLIMIT_FSIZE", 16 * 1024 * 1024)
cap("RLIMIT_CORE", 0)
sys.argv = ["solution.py"]
state = {{"tests": False}}
try:
    runpy.run_path("solution.py", init_globals={{"{state}": state}}, run_name="__main__")
except SystemExit as stop:
    if not state["tests"]:  # exit(), sys.exit(0), unittest.main() in the answer: the tests never ran
        sys.stderr.write(f"SystemExit({{stop.code!r}}) in the answer's code, before the reference tests ran\\n")
        sys.exit(3)
    if stop.code not in (0, None):
        raise
    # unittest.main() in the tests: SystemExit(0) once every test has run
finished()
"""
_STATE = "__tierroute_tests__"


@dataclass(frozen=True)
class CodeLimits:
    """Limits for one test run: wall-clock ``timeout_s``, address space ``memory_mb`` (POSIX)."""

    timeout_s: float = 10.0
    memory_mb: int = 1024

    def __post_init__(self) -> None:
        check_number(self.timeout_s, "timeout_s", "CodeLimits", 0.1, 3600.0)
        check_int(self.memory_mb, "memory_mb", "CodeLimits", 64)


def extract_code(response: str) -> str:
    """The code in an answer: its first ```python (or ```py) block, else its first fenced block of
    any language, else the whole answer."""
    blocks = _FENCE.findall(response)
    python = [body for tag, body in blocks if tag.lower() in ("python", "py", "python3")]
    if python or blocks:
        return (python or [b for _, b in blocks])[0]
    return response


def _tail(text: bytes, limit: int = 300) -> str:
    lines = text.decode("utf-8", "replace").strip().splitlines()
    return (lines[-1] if lines else "")[-limit:]


def score_code(response: str, tests: str, limits: CodeLimits | None = None) -> Score:
    """Run :func:`extract_code` of ``response`` followed by ``tests`` (see the module doc)."""
    limits = limits or CodeLimits()
    program = f"{extract_code(response)}\n\n# --- reference tests ---\n{_STATE}['tests'] = True\n{tests}\n"
    with tempfile.TemporaryDirectory(prefix="tierroute-code-") as folder:
        Path(folder, "solution.py").write_text(program, encoding="utf-8")
        launcher = _LAUNCHER.format(memory=limits.memory_mb * 1024 * 1024, cpu=math.ceil(limits.timeout_s) + 1, state=_STATE)
        Path(folder, "launch.py").write_text(launcher, encoding="utf-8")
        argv = [sys.executable, "-I", "-B", "launch.py"]
        sentinel = secrets.token_hex(16)
        with open(Path(folder, "stderr.txt"), "wb") as err:  # a file, capped by RLIMIT_FSIZE (a pipe is not)
            child = subprocess.Popen(
                argv, cwd=folder, env={}, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, start_new_session=os.name == "posix"
            )
            try:
                _hand_over(child, sentinel)
                child.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                _kill(child)
                child.wait()
                return Score(0.0, f"tests timed out after {limits.timeout_s:g} s")
            finally:
                _kill_group(child)  # what it started in the background (still in its group) goes too
        if child.returncode == 0:
            if _read_small(Path(folder, "done.txt")) == sentinel.encode():
                return Score(1.0, "tests passed")
            return Score(
                0.0,
                "the process exited 0 before the reference tests ran to their end (os._exit() or a "
                "killed interpreter?); only a run that finishes the tests passes",
            )
        with open(Path(folder, "stderr.txt"), "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            tail = _tail(fh.read())
    return Score(0.0, f"tests failed (exit {child.returncode}): {tail or 'no error output'}")


def _hand_over(child: subprocess.Popen[bytes], sentinel: str) -> None:
    """Send the sentinel down the child's stdin pipe and close it (a child that died at once is
    left to the exit-status check)."""
    if child.stdin is None:  # Popen(stdin=PIPE) always sets it
        return
    with contextlib.suppress(BrokenPipeError, OSError):
        child.stdin.write(sentinel.encode() + b"\n")
        child.stdin.flush()
    with contextlib.suppress(BrokenPipeError, OSError):
        child.stdin.close()


def _read_small(path: Path, limit: int = 256) -> bytes:
    """At most ``limit`` bytes of ``path`` (b"" when it is missing or not a file)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return b""


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of the child's process group once the child itself has ended."""
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the child and anything it started (its own session on POSIX)."""
    try:
        if os.name == "posix":
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()
    except (ProcessLookupError, PermissionError):
        child.kill()


def _check_tests(reference: Any, output_schema: Any = None) -> str:
    if reference is None or (isinstance(reference, str) and not reference.strip()):
        raise ValueError("the 'code' scorer needs a non-empty 'reference'")
    if not isinstance(reference, str):
        raise ValueError("a 'code' reference must be Python test code (a string of asserts)")
    return reference


#: scored by the benchmark runner (a subprocess per answer, within the run's CodeLimits)
SCORER_SPECS = (ScorerSpec("code", 1.0, _check_tests, runs="subprocess", rank=5),)
