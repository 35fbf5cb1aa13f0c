"""The benchmark's call cache (tierroute.pipelines.benchmark.callcache): what the key covers, what a stored
call holds, that it survives reopening, and how a foreign or broken file is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tierroute.errors import ConfigError
from tierroute.pipelines.benchmark.callcache import CACHE_VERSION, CallCache, cache_key

MESSAGES = [{"role": "user", "content": "What is 2+2?"}]
PARAMS = {"max_tokens": 16, "temperature": 0.0}
URL = "http://127.0.0.1:9/v1"


def test_the_key_covers_model_url_messages_and_params() -> None:
    key = cache_key("m", URL, MESSAGES, PARAMS)
    assert len(key) == 64 and key == cache_key("m", URL + "/", [dict(MESSAGES[0])], {"temperature": 0.0, "max_tokens": 16})
    others = {
        cache_key("m2", URL, MESSAGES, PARAMS),
        cache_key("m", "http://127.0.0.1:10/v1", MESSAGES, PARAMS),
        cache_key("m", URL, [{"role": "user", "content": "What is 2+3?"}], PARAMS),
        cache_key("m", URL, [{"role": "system", "content": "What is 2+2?"}], PARAMS),
        cache_key("m", URL, MESSAGES, {**PARAMS, "max_tokens": 17}),
        cache_key("m", URL, MESSAGES, {**PARAMS, "temperature": 0.7}),
    }
    assert len(others) == 6 and key not in others


def test_a_stored_call_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "cache.sqlite"
    body = {"choices": [{"message": {"content": "4"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    with CallCache(path) as cache:
        assert cache.get("k") is None and len(cache) == 0
        cache.put("k", "m", URL + "/", body, 5, 1, 12.5, "2026-11-28T10:00:00+00:00")
        cache.put("k", "m", URL, {"choices": []}, 0, 0, 1.0)  # the first row stays
    with CallCache(path) as cache:
        got = cache.get("k")
        assert got is not None and len(cache) == 1
        assert (got.body, got.input_tokens, got.output_tokens, got.latency_ms, got.created) == (
            body,
            5,
            1,
            12.5,
            "2026-11-28T10:00:00+00:00",
        )
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT model, base_url FROM calls").fetchone() == ("m", URL)  # the trailing / dropped
    finally:
        db.close()


def test_missing_usage_is_stored_as_null(tmp_path: Path) -> None:
    with CallCache(tmp_path / "c.sqlite") as cache:
        cache.put("k", "m", URL, {"choices": []}, None, None, 3.0)
        got = cache.get("k")
    assert got is not None and (got.input_tokens, got.output_tokens) == (None, None)
    assert got.created.endswith("+00:00")


def test_another_version_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with CallCache(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '0' WHERE name = 'version'")
    db.close()
    with pytest.raises(
        ConfigError,
        match=rf"The call cache '.*old\.sqlite' is version 0; this tierroute reads version "
        rf"{CACHE_VERSION}\. Pass --cache a new file \(the old one is left as it is\)\.",
    ):
        CallCache(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"'.*junk\.sqlite' is not a tierroute call cache \(.*\)\. Pass --cache a new file path\."):
        CallCache(junk)
    with pytest.raises(ConfigError, match=r"Cannot open the call cache .* Pass --cache a writable file path\."):
        CallCache(junk / "below-a-file.sqlite")


def test_someone_elses_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(
        ConfigError,
        match=r"'.*mine\.db' is an sqlite database but not a tierroute call cache \(its tables: "
        r"notes\)\. Pass --cache a new file path; this one is left as it is\.",
    ):
        CallCache(path)
    assert path.read_bytes() == before


def test_the_cache_may_be_used_from_worker_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with CallCache(tmp_path / "c.sqlite") as cache, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: cache.put(f"k{i}", "m", URL, {"i": i}, 1, 1, 1.0), range(40)))
        got = list(pool.map(cache.get, [f"k{i}" for i in range(40)]))
        assert len(cache) == 40 and [g.body["i"] for g in got if g] == list(range(40))
