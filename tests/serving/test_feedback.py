"""Feedback in (tierroute.serving.feedback, POST /v1/feedback) and request ids on decisions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from tierroute.errors import ConfigError, RequestError  # noqa: E402
from tierroute.serving.decision_log import DecisionLog  # noqa: E402
from tierroute.serving.feedback import FeedbackLog, feedback_items, parse_feedback  # noqa: E402
from tierroute.serving.http import ServiceConfig, create_app  # noqa: E402
from tierroute.serving.router import Router  # noqa: E402

TOKEN = "fb-token"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _metric(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture
def service(tmp_path: Path) -> Any:
    config = ServiceConfig(token=TOKEN, feedback_log=str(tmp_path / "feedback.jsonl"))
    router = Router.load(None, decision_log=DecisionLog(tmp_path / "decisions.jsonl"))
    with TestClient(create_app(config, router=router)) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        yield client


# -- request ids ---------------------------------------------------------------------------------


def test_every_decision_has_a_request_id_the_callers_or_a_generated_one(service: Any, tmp_path: Path) -> None:
    given = service.post("/v1/route", json={"prompt": "Summarize this ticket.", "id": "req-1"}).json()
    made = service.post("/v1/route", json={"prompt": "Summarize this ticket."}).json()
    assert given["request_id"] == "req-1" and given["id"] == "req-1"
    assert made["id"] is None and re.fullmatch(r"[0-9a-f]{32}", made["request_id"])
    batch = service.post("/v1/route/batch", json={"requests": [{"prompt": "a", "id": 7}, {"prompt": "b"}]}).json()
    assert batch["decisions"][0]["request_id"] == 7 and len(batch["decisions"][1]["request_id"]) == 32
    logged = [r["request_id"] for r in _lines(tmp_path / "decisions.jsonl")]
    assert logged == ["req-1", made["request_id"], 7, batch["decisions"][1]["request_id"]]


def test_the_library_decision_carries_its_request_id() -> None:
    router = Router.load(None)
    assert router.route({"prompt": "hi", "id": "x"}).request_id == "x"
    for unusable in ("", "  ", "x" * 257, 10**300, True, 1.5, {"a": 1}):  # feedback could not name these
        assert re.fullmatch(r"[0-9a-f]{32}", router.route({"prompt": "hi", "id": unusable}).request_id)
    assert router.route({"prompt": "hi"}).to_dict()["request_id"] != router.route({"prompt": "hi"}).request_id


# -- POST /v1/feedback ---------------------------------------------------------------------------


def _decide(client: TestClient, *ids: str | int) -> None:
    """Route one request per id, so that feedback may name them."""
    answer = client.post("/v1/route/batch", json={"requests": [{"prompt": "Summarize this.", "id": i} for i in ids]})
    assert answer.status_code == 200


def test_feedback_single_list_and_items_forms_are_appended(service: Any, tmp_path: Path) -> None:
    _decide(service, "a", "b", 9, "c")
    assert service.post("/v1/feedback", json={"request_id": "a", "correct": True}).json() == {"accepted": 1, "request_ids": ["a"]}
    listed = service.post(
        "/v1/feedback",
        json=[
            {"request_id": "b", "quality": 0.25, "cost_usd": 0.002, "latency_ms": 812},
            {"request_id": 9, "correct": False, "source": "judge"},
        ],
    )
    assert listed.json() == {"accepted": 2, "request_ids": ["b", "9"]}
    items = service.post("/v1/feedback", json={"items": [{"request_id": "c", "quality": 1, "metadata": {"user": "u1"}}]})
    assert items.status_code == 200
    rows = _lines(tmp_path / "feedback.jsonl")
    assert [(r["request_id"], r["quality"], r["correct"], r["source"]) for r in rows] == [
        ("a", None, True, "human"),
        ("b", 0.25, None, "human"),
        ("9", None, False, "judge"),
        ("c", 1.0, None, "human"),
    ]
    assert rows[1]["cost_usd"] == 0.002 and rows[1]["latency_ms"] == 812.0 and rows[3]["metadata"] == {"user": "u1"}
    assert all(r["schema_version"] == 1 and r["time"] for r in rows)
    assert _metric(service, "tierroute_feedback_total", outcome="accepted") == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"correct": True},
            "'request_id' must be the decision's request id (a non-empty string of at most 256 characters, or "
            "an integer); got None (NoneType). Send the request_id the route response (or the proxy's "
            "x-tierroute-request-id header) gave.",
        ),
        (
            {"request_id": "a", "quality": 1.5},
            "'quality' must be a finite number in [0, 1]; got 1.5 (float). Send the score as "
            "a fraction of full marks, or 'correct': true/false.",
        ),
        (
            {"request_id": "a", "quality": "0.5"},
            "'quality' must be a finite number in [0, 1]; got '0.5' (str). Send the score "
            "as a fraction of full marks, or 'correct': true/false.",
        ),
        (
            {"request_id": "a", "correct": "yes"},
            "'correct' must be true or false; got 'yes' (str). Send a JSON boolean, or 'quality' as a number in [0, 1].",
        ),
        (
            {"request_id": "a"},
            "feedback for 'a' has neither 'quality' nor 'correct'; expected at least one. Send 'quality' (a "
            "number in [0, 1]) or 'correct' (true/false).",
        ),
        (
            {"request_id": "a", "correct": True, "cost_usd": -1},
            "'cost_usd' must be a finite number >= 0; got -1 (int). Send the real cost of the call in USD, or leave it out.",
        ),
        (
            {"request_id": "a", "correct": True, "note": "x"},
            "unknown field(s) ['note']; feedback takes ['request_id', 'quality', "
            "'correct', 'cost_usd', 'latency_ms', 'source', 'metadata']. Put "
            "anything else under 'metadata'.",
        ),
        (
            "yes",
            'Expected one feedback object, a list of them, or {"items": [...]}; got JSON str. Send {"request_id": ..., "correct": true}.',
        ),
    ],
)
def test_bad_feedback_is_a_clear_422_counted_and_nothing_is_written(service: Any, tmp_path: Path, body: Any, message: str) -> None:
    answer = service.post("/v1/feedback", json=body)
    assert answer.status_code == 422
    got = answer.json()["error"]["message"]
    assert got in (message, f"{message} Nothing of this body was kept; fix the item and send the body again.")
    assert _metric(service, "tierroute_feedback_total", outcome="rejected") == 1
    assert _metric(service, "tierroute_client_errors_total", status="422") == 1
    assert not (tmp_path / "feedback.jsonl").read_text(encoding="utf-8")


def test_a_batch_with_one_bad_item_is_refused_whole_naming_the_item(service: Any, tmp_path: Path) -> None:
    answer = service.post("/v1/feedback", json=[{"request_id": "a", "correct": True}, {"request_id": "b", "quality": -0.1}])
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("feedback [1]: 'quality' must be a finite number in [0, 1]; got -0.1")
    assert not (tmp_path / "feedback.jsonl").read_text(encoding="utf-8")  # nothing of it kept: resend it whole


def test_feedback_needs_the_token_and_a_configured_log(service: Any, tmp_path: Path) -> None:
    answer = service.post("/v1/feedback", json={"request_id": "a", "correct": True}, headers={"authorization": "Bearer no"})
    assert answer.status_code == 401
    with TestClient(create_app(ServiceConfig(), router=Router.load(None))) as plain:
        missing = plain.post("/v1/feedback", json={"request_id": "a", "correct": True})
    assert missing.status_code == 404 and "POST /v1/feedback" not in missing.json()["error"]["message"]


# -- ids the service did not decide, replays and conflicts (serving/feedback_ids.py) --------------

UNKNOWN = (
    "this service has not decided request_id 'zz' since it started, or has forgotten it (it remembers the "
    "{capacity} most recent decisions; {forgotten} older ones forgotten so far). Send feedback to the replica "
    "that served the request, or record it with FeedbackLog or in the feedback log file directly (`tierroute "
    "outcomes` joins it); behind a load balancer without affinity, serve with --no-feedback-id-check."
)


def test_feedback_for_an_id_never_decided_is_refused_kept_aside_and_counted(service: Any, tmp_path: Path) -> None:
    _decide(service, "a")
    answer = service.post("/v1/feedback", json={"request_id": "zz", "correct": True})
    assert answer.status_code == 422
    refused = tmp_path / "feedback.jsonl.refused.jsonl"
    assert answer.json()["error"]["message"] == UNKNOWN.format(capacity="200,000", forgotten=0) + (
        f" 1 of 1 item(s) refused; nothing of this body was kept in the feedback log (every item is in {refused}, "
        "with its reason). Send the body again without item(s) [0]."
    )
    assert answer.json()["error"]["refused"] == [{"index": 0, "request_id": "zz", "reason": "unknown_id"}]
    batch = service.post("/v1/feedback", json=[{"request_id": "a", "correct": True}, {"request_id": "zz", "quality": 0.5}])
    assert batch.status_code == 422 and batch.json()["error"]["message"].startswith(
        "feedback [1]: this service has not decided request_id 'zz' since"
    )
    assert not (tmp_path / "feedback.jsonl").read_text(encoding="utf-8")  # refused whole
    kept = _lines(refused)  # nothing lost: every item, with why, in the feedback log's own fields
    assert [(r["request_id"], r["refused"], r["index"], r["status"]) for r in kept] == [
        ("zz", "unknown_id", 0, 422),
        ("a", "batch_refused", 0, 422),
        ("zz", "unknown_id", 1, 422),
    ]
    assert kept[0]["correct"] is True and kept[0]["message"].startswith("this service") and "message" not in kept[1]
    assert _metric(service, "tierroute_feedback_total", outcome="unknown_id") == 2
    assert _metric(service, "tierroute_feedback_total", outcome="batch_refused") == 1
    assert _metric(service, "tierroute_feedback_total", outcome="accepted") == 0
    assert service.post("/v1/feedback", json={"request_id": "a", "correct": True}).status_code == 200  # resent without it


def test_an_unchanged_resend_is_idempotent_and_a_changed_grade_is_a_409(service: Any, tmp_path: Path) -> None:
    _decide(service, "a", 7)
    first = {"request_id": "a", "quality": 0.5, "cost_usd": 0.01}
    assert service.post("/v1/feedback", json=first).json() == {"accepted": 1, "request_ids": ["a"]}
    again = service.post("/v1/feedback", json=[first, {"request_id": 7, "correct": True}, {"request_id": "7", "correct": True}])
    assert again.status_code == 200 and again.json() == {
        "accepted": 1,
        "request_ids": ["7"],
        "duplicates": [{"index": 0, "request_id": "a", "source": "human"}, {"index": 2, "request_id": "7", "source": "human"}],
    }
    changed = service.post("/v1/feedback", json={"request_id": "a", "quality": 0.9, "cost_usd": 0.01})
    assert changed.status_code == 409
    assert changed.json()["error"]["message"].startswith(
        "request_id 'a' already has different feedback from source 'human', accepted earlier; one source grades a "
        "request once (the join would use neither of two different grades). Send a second opinion under another "
        "'source'; an unchanged resend is accepted as a duplicate. 1 of 1 item(s) refused;"
    )
    assert service.post("/v1/feedback", json={"request_id": "a", "quality": 0.9, "source": "judge"}).status_code == 200
    assert [(r["request_id"], r["source"]) for r in _lines(tmp_path / "feedback.jsonl")] == [("a", "human"), ("7", "human"), ("a", "judge")]
    assert [(r["refused"], r["quality"]) for r in _lines(tmp_path / "feedback.jsonl.refused.jsonl")] == [("conflict", 0.9)]
    assert _metric(service, "tierroute_feedback_total", outcome="duplicate") == 2
    assert _metric(service, "tierroute_feedback_total", outcome="conflict") == 1
    assert _metric(service, "tierroute_client_errors_total", status="409") == 1


def test_the_oldest_ids_are_forgotten_at_capacity_and_the_check_can_be_turned_off(tmp_path: Path) -> None:
    config = ServiceConfig(feedback_log=str(tmp_path / "fb.jsonl"), feedback_id_capacity=2)
    with TestClient(create_app(config, router=Router.load(None))) as client:
        _decide(client, "zz", "b", "c")
        answer = client.post("/v1/feedback", json={"request_id": "zz", "correct": True})
        assert answer.status_code == 422 and answer.json()["error"]["message"].startswith(UNKNOWN.format(capacity="2", forgotten=1))
        assert client.post("/v1/feedback", json={"request_id": "c", "correct": True}).status_code == 200
        assert len(client.app.state.feedback_ids) == 2  # type: ignore[attr-defined]
    config = ServiceConfig(feedback_log=str(tmp_path / "open.jsonl"), feedback_check_ids=False)
    with TestClient(create_app(config, router=Router.load(None))) as client:  # replicas without affinity
        assert client.app.state.feedback_ids is None  # type: ignore[attr-defined]
        for quality in (0.1, 0.9):  # unknown id and changed grade: the join sorts them
            assert client.post("/v1/feedback", json={"request_id": "zz", "quality": quality}).status_code == 200
    assert [r["quality"] for r in _lines(tmp_path / "open.jsonl")] == [0.1, 0.9]
    with pytest.raises(ConfigError, match=r"'feedback_id_capacity' parameter of ServiceConfig"):
        ServiceConfig(feedback_id_capacity=0)


def test_malformed_feedback_is_kept_aside_as_sent(service: Any, tmp_path: Path) -> None:
    assert service.post("/v1/feedback", json=[{"request_id": "a", "correct": "yes"}, {"x": 1}]).status_code == 422
    assert service.post("/v1/feedback", json="yes").status_code == 422
    kept = _lines(tmp_path / "feedback.jsonl.refused.jsonl")
    assert [(r["refused"], r["index"], r["item"]) for r in kept] == [
        ("malformed", 0, {"request_id": "a", "correct": "yes"}),
        ("malformed", 1, {"x": 1}),
        ("malformed", 0, "yes"),
    ]
    assert kept[0]["message"].startswith("feedback [0]: 'correct' must be true or false") and "message" not in kept[1]
    assert _metric(service, "tierroute_feedback_total", outcome="rejected") == 3


def test_feedback_ids_forget_the_oldest_and_screen_a_body_in_order() -> None:
    from tierroute.serving.feedback_ids import FeedbackIds

    ids = FeedbackIds(capacity=2)
    for rid in ("a", 5, "a", "b"):  # a decided again: the most recent now, 5 is the oldest
        ids.remember(rid)
    assert "5" not in ids and "a" in ids and len(ids) == 2 and ids.forgotten == 1
    lines = [parse_feedback({"request_id": "a", "correct": c}) for c in (True, True, False)]
    screened = ids.screen([*lines, parse_feedback({"request_id": 5, "correct": True})], prefix=False)
    assert (screened.fresh, screened.duplicates) == ([0], [1])
    assert [(r.index, r.reason) for r in screened.refusals] == [(2, "conflict"), (3, "unknown_id")]
    ids.commit(lines[:1])
    assert ids.screen(lines[:1]).duplicates == [0]
    with pytest.raises(ConfigError, match=r"'capacity' parameter of FeedbackIds"):
        FeedbackIds(capacity=0)


def test_serve_takes_the_id_check_options() -> None:
    from tierroute.cli import build_parser

    args = build_parser().parse_args(["serve", "--no-feedback-id-check", "--feedback-id-capacity", "5"])
    assert (args.feedback_check_ids, args.feedback_id_capacity) == (False, 5)
    assert build_parser().parse_args(["serve"]).feedback_check_ids is True


# -- the Python API ------------------------------------------------------------------------------


def test_feedback_log_api_checks_appends_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "fb.jsonl"
    with FeedbackLog(path) as log:
        line = log.record(request_id="r1", quality=0.9, source="judge")
        log.record({"request_id": "r2"}, correct=False)
        with pytest.raises(RequestError, match=r"^'latency_ms' must be a finite number >= 0; got nan \(float\)"):
            log.record(request_id="r3", correct=True, latency_ms=float("nan"))
    assert line["quality"] == 0.9 and log.accepted == 2
    with path.open("ab") as fh:
        fh.write(b'{"request_id": "tor')  # a crash mid-write
    with FeedbackLog(path) as again:
        assert again.torn == 1
        again.record(request_id="r4", correct=True)
    assert [r["request_id"] for r in _lines(path)] == ["r1", "r2", "r4"]
    assert (tmp_path / "fb.jsonl.torn").read_bytes() == b'{"request_id": "tor\n'


def test_feedback_items_and_parse_feedback_shapes() -> None:
    assert feedback_items({"request_id": "a"}) == [{"request_id": "a"}]
    assert feedback_items([1, 2]) == [1, 2]
    with pytest.raises(RequestError, match=r"^Expected \{\"items\": \[feedback, \.\.\.\]\} with nothing beside"):
        feedback_items({"items": [], "request_id": "a"})
    assert parse_feedback({"request_id": 5, "correct": True})["request_id"] == "5"
    with pytest.raises(RequestError, match=r"^'source' must be a short name"):
        parse_feedback({"request_id": "a", "correct": True, "source": ""})


def test_the_judge_reads_a_score_and_checks_its_settings() -> None:
    from tierroute.errors import ConfigError
    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.serving.judge import Judge, JudgeConfig, parse_score

    assert [parse_score(t) for t in ("0.75", "Score: 1", "I'd say .5 overall", "10 out of 10", None)] == [0.75, 1.0, 0.5, None, None]
    with pytest.raises(ConfigError, match=r"^The judge model 'gpt-4o' is not a candidate with a base_url in catalogue"):
        Judge(JudgeConfig("gpt-4o"), builtin_catalogue("article"), {})
    with pytest.raises(ConfigError, match=r"sample"):
        JudgeConfig("gpt-4o", sample=1.5)
