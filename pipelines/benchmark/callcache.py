"""The benchmark's call cache: a rerun never pays twice for the same call.

Every successful chat completion the benchmark pays for is stored in one sqlite file (stdlib
``sqlite3``; default ``runs/cache/benchmark.sqlite``, shared by every benchmark run) under
:func:`cache_key`: the sha256 of the candidate's ``base_url`` (trailing ``/`` ignored), the model
id sent upstream, the exact messages and the sampling parameters (``max_tokens``,
``temperature``). The stored row holds the response body as received (JSON text), its token
usage, the measured latency and when it was made (UTC). Each row is committed as soon as it
arrives, so an interrupted run loses nothing it paid for.

Only *successes* are stored: an HTTP 200 whose body holds an answer (``choices[0]``). Failed
calls (timeouts, connection errors, 429/5xx after the retries, 4xx, malformed or answerless
bodies) are not, so a rerun tries them again. Judge calls are cached the same way (their key
names the judge model). Scores are not cached: they are recomputed from the stored body on
every run, so a fixed scorer or a new threshold needs no new calls.

>>> key = cache_key("gpt-4o", "https://api.example/v1/", [{"role": "user", "content": "hi"}], {"max_tokens": 8})
>>> key == cache_key("gpt-4o", "https://api.example/v1", [{"role": "user", "content": "hi"}], {"max_tokens": 8})
True
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from tierroute.errors import ConfigError

__all__ = ["CACHE_VERSION", "CachedCall", "CallCache", "cache_key"]

#: bumped when the key or the table changes; a cache of another version is refused, not misread
CACHE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    base_url TEXT NOT NULL,
    body TEXT NOT NULL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    latency_ms REAL NOT NULL,
    created TEXT NOT NULL
);
"""


def cache_key(model: str, base_url: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """The cache key of one call (hex sha256 of its canonical JSON; key order does not matter)."""
    canonical = {
        "v": CACHE_VERSION,
        "base_url": base_url.rstrip("/"),
        "model": model,
        "messages": [dict(m) for m in messages],
        "params": dict(params),
    }
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedCall:
    """One stored success: the response ``body`` (parsed JSON), usage (None when the upstream sent
    none), the latency measured when it was made, and its UTC time (ISO 8601)."""

    body: Mapping[str, Any]
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float
    created: str


class CallCache:
    """The sqlite file of paid calls. Use as a context manager (or call :meth:`close`); the file
    and its folder are created on open. An existing sqlite file that is not a call cache is refused
    untouched. The methods may be called from any thread (one at a time, under a lock), so that the
    benchmark's event loop can hand the disk work (a commit per call) to worker threads.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d, CallCache(os.path.join(d, "c.sqlite")) as cache:
    ...     cache.put("k", "m", "http://x/v1", {"choices": []}, 3, 1, 12.5)
    ...     (cache.get("k").latency_ms, cache.get("other"), len(cache))
    (12.5, None, 1)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"Cannot open the call cache {str(self.path)!r} ({exc}). Pass --cache a writable file path.") from None
        self._lock = threading.Lock()
        try:
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and not {"meta", "calls"} <= tables:  # someone else's database: write nothing into it
                raise ConfigError(
                    f"{str(self.path)!r} is an sqlite database but not a tierroute call cache (its tables: "
                    f"{', '.join(sorted(tables)[:5])}). Pass --cache a new file path; this one is left as it is."
                )
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('version', ?)", (str(CACHE_VERSION),))
                self._db.commit()
            elif row[0] != str(CACHE_VERSION):
                raise ConfigError(
                    f"The call cache {str(self.path)!r} is version {row[0]}; this tierroute reads version "
                    f"{CACHE_VERSION}. Pass --cache a new file (the old one is left as it is)."
                )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(f"{str(self.path)!r} is not a tierroute call cache ({exc}). Pass --cache a new file path.") from None
        except ConfigError:
            self._db.close()
            raise

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def get(self, key: str) -> CachedCall | None:
        """The stored call for ``key``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT body, input_tokens, output_tokens, latency_ms, created FROM calls WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return CachedCall(json.loads(row[0]), row[1], row[2], float(row[3]), row[4])

    def put(
        self,
        key: str,
        model: str,
        base_url: str,
        body: Mapping[str, Any],
        input_tokens: int | None,
        output_tokens: int | None,
        latency_ms: float,
        created: str | None = None,
    ) -> None:
        """Store one successful call (committed at once); ``created`` defaults to now (UTC, ISO 8601).
        A key already stored keeps its first row."""
        created = created or datetime.now(timezone.utc).isoformat()
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    base_url.rstrip("/"),
                    json.dumps(body, ensure_ascii=False),
                    input_tokens,
                    output_tokens,
                    float(latency_ms),
                    created,
                ),
            )
            self._db.commit()
