"""The exploration slice (epsilon-uniform, propensities) and the decision log (one JSON line per
decision, appended, thread-safe, prompts hashed unless allowed)."""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("lightgbm")

from tierroute.errors import ConfigError  # noqa: E402
from tierroute.serving import Router, RouterConfig  # noqa: E402
from tierroute.serving.decision_log import DecisionLog, Explorer, RequestIds, request_id_for  # noqa: E402

REQUEST = {"prompt": "Pull the order id from: order #88231 shipped late.", "output_schema": {"order_id": "string"}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pandas as pd

    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.export import export_bundle
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    frame = pd.DataFrame(list(generate(SyntheticConfig(300, seed=3))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    config = LearnedConfig(encoder="none", router=RouterParams(n_estimators=30, n_folds=2, early_stopping_rounds=10, n_threads=1))
    router = LearnedRouter(config).fit(RoutingData.from_frame(frame), builtin_catalogue("article"))
    return export_bundle(router, tmp_path_factory.mktemp("log") / "bundle")


def test_explorer_propensities_and_draw_frequencies() -> None:
    candidates, tiers = ("a", "b", "c", "d"), ("tier1", "tier1", "tier2", "tier3")
    explorer = Explorer(0.2, candidates, tiers, seed=1)
    out = [explorer.draw(2) for _ in range(20_000)]
    counts = Counter(k for k, _, _ in out)
    assert abs(counts[2] / len(out) - (0.8 + 0.2 / 4)) < 0.01
    for other in (0, 1, 3):
        assert abs(counts[other] / len(out) - 0.05) < 0.006
    assert {(k, round(p, 9), e) for k, p, e in out} == {(2, 0.85, False), (0, 0.05, True), (1, 0.05, True), (3, 0.05, True)}
    again = Explorer(0.2, candidates, tiers, seed=1)
    assert out[:50] == [again.draw(2) for _ in range(50)]  # seeded
    with pytest.raises(ConfigError, match=r"^The 'epsilon' parameter of Explorer must be"):
        Explorer(1.5, candidates, tiers)


def test_exploration_stays_within_the_candidates_that_fit_the_sla() -> None:
    explorer = Explorer(1.0, ("a", "b", "c", "d"), ("t1", "t1", "t2", "t3"), seed=0)
    fits = [True, False, True, False]
    draws = [explorer.draw(0, fits) for _ in range(2000)]
    assert {k for k, _, _ in draws} == {0, 2}  # never an SLA breaker
    assert {round(p, 9) for _, p, _ in draws} == {0.5}  # epsilon / (candidates that fit)
    assert {k for k, _, _ in (explorer.draw(0, [False] * 4) for _ in range(200))} == {0, 1, 2, 3}  # none fits: all


def test_an_explored_decision_carries_the_drawn_model_s_cost(bundle: Path) -> None:
    router = Router.load(bundle, RouterConfig(deadline_ms=None, epsilon=1.0, seed=5), strict=True)
    plain = Router.load(bundle, RouterConfig(deadline_ms=None), strict=True)
    for _ in range(30):
        d = router.route(REQUEST)
        greedy = plain.route(REQUEST)
        assert d.greedy_model == greedy.model
        if d.explored:
            assert d.model != greedy.model and d.reason.startswith("explored (epsilon 1): drew ")
            intercept = router.bundle.cost_intercept[router.bundle.candidates.index(d.model)]
            assert d.expected_cost_usd >= intercept - 1e-12 and d.expected_cost_usd != greedy.expected_cost_usd


def test_router_with_epsilon_and_a_log_writes_one_line_per_decision(bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "decisions.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": "line"}\n', encoding="utf-8")  # a log that exists is appended to
    with DecisionLog(path) as log:
        router = Router.load(bundle, RouterConfig(deadline_ms=None, epsilon=0.5, seed=3), strict=True, decision_log=log)
        decisions = [router.route({**REQUEST, "id": f"r{i}"}) for i in range(200)]
        decisions += router.route_batch([{**REQUEST, "id": "b1"}, {"prompt": "hello"}])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"earlier": "line"} and len(lines) == 1 + 202
    rows = [json.loads(line) for line in lines[1:]]
    assert [r["request_id"] for r in rows[:3]] == ["r0", "r1", "r2"] and rows[200]["request_id"] == "b1"
    assert re.fullmatch(r"[0-9a-f]{32}", rows[201]["request_id"])  # no id sent: one generated for feedback
    for row, decision in zip(rows, decisions):
        assert row["model"] == decision.model and row["propensity"] == decision.propensity
        assert row["bundle_id"] == router.bundle_id and row["source"] == "learned"
        assert "prompt" not in row and len(row["prompt_sha256"]) == 64
        assert set(row["probabilities"]) == set(router.bundle.candidates)
    explored = [r for r in rows if r["explored"]]
    assert 0 < len(explored) < len(rows)
    assert all(r["model"] != r["greedy_model"] for r in explored)
    m = len(router.bundle.candidates)
    assert {round(r["propensity"], 9) for r in rows} <= {round(0.5 + 0.5 / m, 9), round(0.5 / m, 9)}


def test_prompts_are_logged_only_when_allowed_and_any_text_survives(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.jsonl", log_prompts=True) as log:
        router = Router.load(None, decision_log=log)  # the tree alone: propensity 1, logged all the same
        router.route({"prompt": "lone \ud800 surrogate and 🙂"})
    row = json.loads((tmp_path / "d.jsonl").read_text(encoding="utf-8"))
    assert row["prompt"] == "lone \ud800 surrogate and 🙂" and row["source"] == "heuristic"
    assert row["fallback"] == "no_bundle" and row["propensity"] == 1.0 and row["explored"] is False


def test_the_log_is_safe_across_threads(bundle: Path, tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "t.jsonl") as log:
        router = Router.load(bundle, RouterConfig(deadline_ms=None, epsilon=0.1, seed=0), strict=True, decision_log=log)

        def work(k: int) -> None:
            for i in range(100):
                router.route({**REQUEST, "id": f"{k}-{i}"})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["request_id"] for r in rows) == sorted(f"{k}-{i}" for k in range(4) for i in range(100))


def test_router_config_checks_epsilon() -> None:
    with pytest.raises(ConfigError, match=r"^The 'epsilon' parameter of RouterConfig must be"):
        RouterConfig(epsilon=-0.1)


def test_the_http_service_logs_every_decision_across_a_reload(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from tierroute.serving.http import ServiceConfig, create_app

    path = tmp_path / "service.jsonl"
    config = ServiceConfig(bundle=str(bundle), decision_log=str(path), router=RouterConfig(deadline_ms=None, epsilon=0.3, seed=1))
    with TestClient(create_app(config)) as client:
        first = client.post("/v1/route", json={**REQUEST, "id": "one"}).json()
        assert first["id"] == "one" and 0 < first["propensity"] <= 1 and "explored" in first
        assert client.post("/admin/reload", json={}).status_code == 200
        batch = client.post("/v1/route/batch", json={"requests": [{**REQUEST, "id": "two"}, {"prompt": "hi", "id": 3}]}).json()
        assert [d["id"] for d in batch["decisions"]] == ["two", 3]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["request_id"] for r in rows] == ["one", "two", 3]
    assert rows[0]["propensity"] == first["propensity"] and rows[0]["model"] == first["model"]


def test_the_route_command_appends_to_a_decision_log(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from tierroute.cli import main

    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({**REQUEST, "id": "x"}) + "\n" + json.dumps({"prompt": "hi"}) + "\n", encoding="utf-8")
    log = tmp_path / "route.jsonl"
    assert main(["route", "--bundle", str(bundle), "--input", str(requests), "--decision-log", str(log)], out=io.StringIO()) == 0
    assert [json.loads(line)["request_id"] for line in log.read_text(encoding="utf-8").splitlines()][:1] == ["x"]
    assert re.fullmatch(r"[0-9a-f]{32}", json.loads(log.read_text(encoding="utf-8").splitlines()[1])["request_id"])
    assert main(["route", "--prompt", "hi", "--decision-log", str(log)], out=io.StringIO()) == 1
    assert capsys.readouterr().err.strip() == (
        "error: --decision-log needs --bundle (the heuristic policy alone logs nothing to learn from)."
    )


def test_a_closed_log_drops_lines_but_never_fails_a_decision(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = DecisionLog(tmp_path / "closed.jsonl")
    router = Router.load(None, decision_log=log)
    router.route({"prompt": "first"})
    log.close()
    with caplog.at_level("WARNING", logger="tierroute.serving"):
        decisions = [router.route({"prompt": "after close"}) for _ in range(3)]
    assert all(d.source == "heuristic" for d in decisions) and log.dropped == 3
    assert len((tmp_path / "closed.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    assert sum("could not be written" in r.getMessage() for r in caplog.records) == 1  # warned once


# -- issue 13: torn tails and exact drop counts --------------------------------------------------


def test_a_torn_last_line_is_moved_aside_so_the_next_decision_starts_a_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    whole = json.dumps({"model": "m", "request_id": "before"})
    path.write_bytes((whole + "\n" + whole[:17]).encode())  # a crash in the middle of the second line
    with DecisionLog(path) as log:
        assert log.torn == 1 and log.dropped == 0
        Router.load(None, decision_log=log).route({"prompt": "after the restart", "id": "next"})
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]  # every line is JSON again
    assert [r["request_id"] for r in rows] == ["before", "next"]
    assert (tmp_path / "d.jsonl.torn").read_bytes() == whole[:17].encode() + b"\n"
    from tierroute.pipelines.lifecycle.drift import read_decision_log

    assert len(read_decision_log([path])) == 2  # drift reads the file instead of refusing it


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"model": "m", "request_id": "kept"}', encoding="utf-8")
    with DecisionLog(path) as log:
        Router.load(None, decision_log=log).route({"prompt": "hi", "id": "new"})
        assert log.torn == 0
    assert [json.loads(x)["request_id"] for x in path.read_text(encoding="utf-8").splitlines()] == ["kept", "new"]
    assert not (tmp_path / "d.jsonl.torn").exists()


def test_dropped_counts_exactly_the_lines_that_did_not_reach_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno
    import os

    from tierroute.serving import decision_log as module

    log = DecisionLog(tmp_path / "full.jsonl")
    router = Router.load(None, decision_log=log)
    real_write, failures = os.write, iter([True, False, False, True, False])  # the disk fills, frees, fills ...
    full = [False]

    def write(fd: int, data: bytes) -> int:  # as the kernel does: a short write, then ENOSPC
        if fd != log._fd:
            return real_write(fd, data)
        if full[0]:
            full[0] = False
            raise OSError(errno.ENOSPC, "No space left on device")
        if next(failures, False):
            full[0] = True
            return real_write(fd, bytes(data[: len(data) // 2]))  # half a line lands
        return real_write(fd, data)

    monkeypatch.setattr(module.os, "write", write)
    with caplog.at_level("WARNING", logger="tierroute.serving"):
        for i in range(8):
            router.route({"prompt": f"decision {i}", "id": i})
    monkeypatch.undo()
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "full.jsonl").read_text(encoding="utf-8").splitlines()]
    assert log.dropped == 2 and log.torn == 0  # the half lines were cut back off
    assert [r["request_id"] for r in rows] == [1, 2, 4, 5, 6, 7]  # 8 decisions - 2 dropped, none glued
    assert sum("could not be written" in r.getMessage() for r in caplog.records) == 1


def test_a_fifo_is_refused_as_a_decision_log(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(
        ConfigError,
        match=r"^Cannot open the decision log .*pipe\.jsonl' for appending \(No such device "
        r"or address\)\. Pass a writable file path\.$",
    ):
        DecisionLog(tmp_path / "pipe.jsonl")  # no reader: refused at once, never blocking


def test_privacy_mode_logs_the_feature_vector_and_its_spec_instead_of_text(bundle: Path, tmp_path: Path) -> None:
    import numpy as np

    from tierroute.models.decision import feature_matrix

    with DecisionLog(tmp_path / "private.jsonl", log_features=True) as log:
        router = Router.load(bundle, RouterConfig(deadline_ms=None), strict=True, decision_log=log)
        router.route({"prompt": "Pull the order id from: #88231", "output_schema": {"order_id": "string"}, "id": "p1"})
    [row] = [json.loads(line) for line in (tmp_path / "private.jsonl").read_text(encoding="utf-8").splitlines()]
    assert "prompt" not in row and row["request_id"] == "p1"
    assert row["feature_spec"] == router.bundle.manifest["feature_spec_fingerprint"]
    from tierroute.request import parse_request

    request = parse_request({"prompt": "Pull the order id from: #88231", "output_schema": {"order_id": "string"}})
    b = router.bundle
    expected = feature_matrix([b.extractor.signals(request).as_vector()], None if b.encoder is None else b.encoder.encode([request.prompt]))
    logged = np.array([np.nan if v is None else v for v in row["features"]], dtype=np.float32)
    assert np.allclose(logged, expected[0], equal_nan=True) and None in row["features"]  # no SLA: null, not NaN
    assert len(row["features"]) == len(b.manifest["feature_spec"]["names"])
    with DecisionLog(tmp_path / "plain.jsonl") as plain:  # off by default
        Router.load(bundle, RouterConfig(deadline_ms=None), strict=True, decision_log=plain).route({"prompt": "hi"})
    assert "features" not in json.loads((tmp_path / "plain.jsonl").read_text(encoding="utf-8"))


def test_generated_request_ids_are_distinct_hex_across_pool_refills_and_threads() -> None:
    ids = RequestIds()
    drawn: list[str] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [ids.new() for _ in range(300)]  # more than one pool of 256 per thread
        with lock:
            drawn.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(drawn) == 1200 and len(set(drawn)) == 1200
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn)


def test_a_caller_id_is_kept_and_a_missing_or_unusable_one_is_generated_from_the_pool() -> None:
    ids = RequestIds()
    assert request_id_for({"prompt": "x", "id": "req-7"}, ids) == "req-7"
    assert request_id_for({"prompt": "x", "id": 42}, ids) == 42
    for item in ({"prompt": "x"}, {"prompt": "x", "id": "  "}, {"prompt": "x", "id": True}, {"prompt": "x", "id": "y" * 257}):
        assert re.fullmatch(r"[0-9a-f]{32}", str(request_id_for(item, ids)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_repeats_the_parents_pending_ids() -> None:
    ids = RequestIds()
    ids.new()  # the pool is drawn: 255 ids are pending in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id and leave at once
        os.write(write, ids.new().encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert status == 0 and re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != ids.new()  # without the fork hook both would hand out the same pending id
