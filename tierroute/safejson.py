"""JSON from untrusted sources, read without crashing the reader (stdlib only).

``json.loads`` trusts its input: nesting 10,000 deep raises RecursionError, a 5,000-digit
integer raises a bare ValueError from ``int()``, ``NaN``/``Infinity`` are accepted although JSON
has no such tokens, and reading a path that is a FIFO blocks forever. This module refuses all of
those up front, with one exception class whose message says what arrived, what was expected and
what to do, so every edge (HTTP bodies, request files, bundle manifests, ingested logs) can turn
it into one 4xx or one error line.

    loads(text, max_depth=64)                 # any JSON text or bytes -> Python value
    read_json_file(path, max_bytes=1 << 20)   # a regular file only, size-capped, never blocks
    check_depth(value, max_depth=64)          # an already-built value (e.g. from a caller's dict)
    find_surrogate(value)                     # where a lone surrogate hides ("$.id"), or None

Every refusal is an :class:`UnsafeJSONError` (a ValueError) with ``reason`` one of ``syntax``,
``encoding``, ``depth``, ``number``, ``constant``, ``size``, ``surrogate``, ``not_a_file``,
``unreadable``. Depth is counted in arrays/objects: ``1`` and ``"a"`` are depth 0, ``[]`` is 1,
``{"a": [1]}`` is 2. The depth check is iterative, so it never recurses whatever arrives.

>>> loads('{"a": [1, 2.5, "x"]}')
{'a': [1, 2.5, 'x']}
>>> loads("[" * 100 + "]" * 100)  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
tierroute.safejson.UnsafeJSONError: The JSON nests arrays/objects more than 64 levels deep; at most 64 are accepted.
    Flatten it (or raise max_depth if it is legitimate).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Mapping
from itertools import accumulate
from pathlib import Path
from typing import Any

__all__ = ["UnsafeJSONError", "loads", "read_json_file", "check_depth", "find_surrogate", "DEFAULT_MAX_DEPTH", "DEFAULT_MAX_NUMBER_CHARS"]

#: arrays/objects nested deeper than this are refused (real request bodies stay far below)
DEFAULT_MAX_DEPTH = 64
#: a number token longer than this is refused (int() is quadratic in the digits; Python caps it at 4,300)
DEFAULT_MAX_NUMBER_CHARS = 100

# a JSON string token (the unrolled form: linear, no backtracking), and everything that is not a bracket
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class UnsafeJSONError(ValueError):
    """JSON that was refused: malformed, too deep, too large, a number out of range, a NaN/Infinity
    token, a lone surrogate (where refused), or a path that is not a readable regular file.
    ``reason`` names which (see the module docstring); ``detail`` is the bare finding for callers
    that word their own message (e.g. "Expecting value at char 0")."""

    def __init__(self, reason: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail if detail is not None else message


def _nesting_exceeds(text: str, max_depth: int) -> bool:
    """True when ``text`` nests arrays/objects deeper than ``max_depth`` (strings skipped)."""
    if text.count("[") + text.count("{") <= max_depth:  # cannot be deeper: the common case, at C speed
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > max_depth


def _number_hooks(where: str, max_number_chars: int) -> dict[str, Any]:
    def check_length(token: str) -> None:
        if len(token) > max_number_chars:
            raise UnsafeJSONError(
                "number",
                f"{where} holds a number written with {len(token):,} characters "
                f"({token[:20]}...); at most {max_number_chars} are accepted. Send it as a "
                "string if it is an identifier, or round it.",
            )

    def parse_int(token: str) -> int:
        check_length(token)
        return int(token)

    def parse_float(token: str) -> float:
        check_length(token)
        value = float(token)
        if not math.isfinite(value):
            raise UnsafeJSONError(
                "number", f"{where} holds the number {token}, beyond the range of a 64-bit float (about 1.8e308); send a smaller number."
            )
        return value

    def parse_constant(token: str) -> Any:
        raise UnsafeJSONError(
            "constant", f"{where} holds the token {token}, which is not JSON (JSON has no NaN or Infinity); send null or a finite number."
        )

    return {"parse_int": parse_int, "parse_float": parse_float, "parse_constant": parse_constant}


def loads(
    data: str | bytes | bytearray,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_bytes: int | None = None,
    max_number_chars: int = DEFAULT_MAX_NUMBER_CHARS,
    allow_surrogates: bool = True,
    where: str = "The JSON",
) -> Any:
    """Parse ``data`` (text, or bytes in UTF-8/16/32 as :func:`json.loads` detects) like
    :func:`json.loads`, refusing: more than ``max_bytes`` (bytes, or characters for text), nesting
    deeper than ``max_depth``, number tokens longer than ``max_number_chars`` or beyond float range,
    ``NaN``/``Infinity``, and (with ``allow_surrogates=False``) strings holding a lone surrogate.
    ``where`` starts every message (e.g. "The body", "line 3"). Raises UnsafeJSONError only."""
    if max_bytes is not None and len(data) > max_bytes:
        unit = "characters" if isinstance(data, str) else "bytes"
        raise UnsafeJSONError("size", f"{where} has {len(data):,} {unit}; at most {max_bytes:,} are accepted. Send less.")
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode(json.detect_encoding(data))
        except UnicodeDecodeError as exc:
            detail = f"{exc.reason} at byte {exc.start}"
            raise UnsafeJSONError("encoding", f"{where} is not UTF-8 text ({detail}); send JSON encoded as UTF-8.", detail) from None
    else:
        text = data
    if _nesting_exceeds(text, max_depth):
        raise UnsafeJSONError(
            "depth",
            f"{where} nests arrays/objects more than {max_depth} levels deep; at most "
            f"{max_depth} are accepted. Flatten it (or raise max_depth if it is legitimate).",
        )
    try:
        value = json.loads(text, **_number_hooks(where, max_number_chars))
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at char {exc.pos}"
        raise UnsafeJSONError("syntax", f"{where} is not JSON ({detail}); send one JSON value.", detail) from None
    except RecursionError:  # the scan above makes this unreachable; kept so no caller ever sees one
        raise UnsafeJSONError("depth", f"{where} nests too deeply to parse; flatten it.") from None
    if not allow_surrogates:
        path = find_surrogate(value)
        if path is not None:
            raise UnsafeJSONError(
                "surrogate", f"{where} holds a lone surrogate (half of a UTF-16 pair) at {path}, which is not text; send valid Unicode."
            )
    return value


def check_depth(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, where: str = "The value") -> None:
    """Refuse (UnsafeJSONError, reason ``depth``) a built value nesting lists/tuples/dicts deeper
    than ``max_depth``; iterative, so a self-referencing or 100,000-deep value is refused too.
    Depth first, pushing containers only (every request with a schema pays for this walk)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        kind = type(node)
        if kind is dict or (kind not in _PLAIN_LEAVES and isinstance(node, Mapping)):
            children: Any = node.values()
        elif kind is list or kind is tuple or (kind not in _PLAIN_LEAVES and isinstance(node, (list, tuple))):
            children = node
        else:
            continue
        if depth >= max_depth:
            raise UnsafeJSONError(
                "depth",
                f"{where} nests arrays/objects more than {max_depth} levels deep; at "
                f"most {max_depth} are accepted. Flatten it (or check it for a self-reference).",
            )
        depth += 1
        for child in children:
            if type(child) not in _PLAIN_LEAVES:
                push((child, depth))


#: the value types check_depth never descends into, tested by exact type first (cheap)
_PLAIN_LEAVES = frozenset({str, int, float, bool, type(None)})


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_surrogate(value: Any, *, max_nodes: int = 1_000_000) -> str | None:
    """The path (``$``, ``$.id``, ``$.messages[0].content``) of the first string (value or key)
    holding a lone surrogate, or None when there is none; iterative, at most ``max_nodes`` visited."""
    stack: list[tuple[Any, str]] = [(value, "$")]
    visited = 0
    while stack and visited < max_nodes:
        node, path = stack.pop()
        visited += 1
        if isinstance(node, str):
            if _has_surrogate(node):
                return path
        elif isinstance(node, Mapping):
            for key, child in reversed(list(node.items())):
                if isinstance(key, str) and _has_surrogate(key):
                    return f"{path} (a key)"
                stack.append((child, f"{path}.{key}"))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(node))))
    return None


def read_json_file(
    path: str | os.PathLike[str], *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH, max_number_chars: int = DEFAULT_MAX_NUMBER_CHARS
) -> Any:
    """The JSON in the regular file at ``path`` (symlinks followed), refusing a FIFO, socket,
    device or folder without blocking on it, a file over ``max_bytes``, and what :func:`loads`
    refuses. FileNotFoundError passes through (callers often word "missing" differently)."""
    shown = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnsafeJSONError("unreadable", f"{shown!r} cannot be opened ({exc.strerror}); check its permissions.") from None
    try:
        info = os.fstat(fd)  # of what was opened: no window between checking and reading
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a FIFO (named pipe)"
                if stat.S_ISFIFO(info.st_mode)
                else "a folder"
                if stat.S_ISDIR(info.st_mode)
                else "a socket"
                if stat.S_ISSOCK(info.st_mode)
                else "a device or special file"
            )
            raise UnsafeJSONError(
                "not_a_file", f"{shown!r} is {kind}, not a regular file; expected a JSON file. Replace it with the file itself."
            )
        if info.st_size > max_bytes:
            raise UnsafeJSONError(
                "size", f"{shown!r} has {info.st_size:,} bytes; at most {max_bytes:,} are accepted. Check it is the right file."
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)  # a file growing while read is capped all the same
    except OSError as exc:
        raise UnsafeJSONError("unreadable", f"{shown!r} cannot be read ({exc.strerror}).") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UnsafeJSONError(
            "size", f"{shown!r} has over {max_bytes:,} bytes; at most {max_bytes:,} are accepted. Check it is the right file."
        )
    return loads(data, max_depth=max_depth, max_number_chars=max_number_chars, where=f"{Path(shown).name!r}")
