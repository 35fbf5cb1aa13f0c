"""run_ingest end to end into tmp_path: outputs, counts, the bad-row cap, the output-folder rules,
path handling, re-ingesting a run, IngestConfig checks; then three runs on whole real files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tierroute.errors import ConfigError, DataFormatError, DataValidationError, OutputDirError
from tierroute.pipelines.data.ingest import EXCLUSION_REASONS, INGEST_MANIFEST, IngestConfig, IngestResult, outcome_features, run_ingest
from tierroute.pipelines.data.records import FEATURE_FIELDS, OUTCOME_FIELDS

MODELS = ("claude-3-haiku", "gpt-4o")


def good_rows(n_requests: int, task: str = "triage", prefix: str = "r") -> list[dict[str, Any]]:
    rows = []
    for i in range(n_requests):
        for j, model in enumerate(MODELS):
            rows.append(
                {
                    "request_id": f"{prefix}{i}",
                    "prompt": f"Classify ticket number {i}.",
                    "model": model,
                    "quality": (i + j) % 2,
                    "cost_usd": 0.003 if j == 0 else 0.12,
                    "task": task,
                }
            )
    return rows


BAD_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("missing_field", {"request_id": "x1", "prompt": "p", "model": "m", "quality": 1}),
    ("wrong_type", {"request_id": "x2", "prompt": "p", "model": "m", "quality": "abc", "cost_usd": 0}),
    ("quality_nan", {"request_id": "x3", "prompt": "p", "model": "m", "quality": "nan", "cost_usd": 0}),
    ("negative_cost", {"request_id": "x4", "prompt": "p", "model": "m", "quality": 1, "cost_usd": -1}),
    (
        "duplicate_request_model",
        {"request_id": "r0", "prompt": "Classify ticket number 0.", "model": "gpt-4o", "quality": 1, "cost_usd": 0.1},
    ),
    ("conflicting_request_id", {"request_id": "r1", "prompt": "A different prompt.", "model": "m2", "quality": 1, "cost_usd": 0.1}),
]


def write_jsonl(path: Path, rows: list[Any], extra_lines: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows) + "".join(line + "\n" for line in extra_lines)
    path.write_text(text, encoding="utf-8")
    return path


def ingest(*paths: Path | str, out: str | None = "out", **kwargs: Any) -> IngestResult:
    return run_ingest(IngestConfig(paths=tuple(str(p) for p in paths), out_dir=out, **kwargs))


def quarantine(out: Path) -> list[dict[str, Any]]:
    def no_constants(name: str) -> None:
        raise AssertionError(f"quarantine.jsonl holds a bare {name}")

    return [json.loads(line, parse_constant=no_constants) for line in (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]


# --- a full run ---------------------------------------------------------------------------------


def test_run_writes_outcomes_quarantine_and_manifest(tmp_path: Path) -> None:
    import datasets

    src = write_jsonl(tmp_path / "logs" / "log.jsonl", good_rows(20) + [row for _, row in BAD_ROWS], ("{oops",))
    result = ingest(src, max_bad_fraction=0.5)
    out = tmp_path / "out"
    assert result.out_dir == Path("out")
    assert sorted(p.name for p in out.iterdir()) == ["ingest.json", "outcomes", "quarantine.jsonl"]
    assert result.rows_read == 40 + len(BAD_ROWS) + 1
    assert result.rows_kept == 40
    assert result.reasons == {**{reason: 1 for reason, _ in BAD_ROWS}, "unparseable_row": 1}
    assert result.rows_quarantined == 7

    table = datasets.load_from_disk(str(out / "outcomes"))
    assert len(table) == 40
    assert table.features == outcome_features()
    assert table.column_names == [*OUTCOME_FIELDS, *FEATURE_FIELDS]  # feature fields: null but on feature-only rows
    first = table[0]
    assert first["request_id"] == "r0" and first["model"] == "claude-3-haiku" and first["quality"] == 0.0
    assert first["correct"] is False and first["task"] == "triage" and first["output_schema"] is None
    assert table.to_pandas().equals(result.to_pandas())

    lines = quarantine(out)
    assert len(lines) == 7
    assert all(set(line) == {"where", "reason", "detail", "row"} for line in lines)
    by_reason = {line["reason"]: line for line in lines}
    assert by_reason["missing_field"]["where"] == "log.jsonl:41"
    assert by_reason["missing_field"]["detail"] == "required field 'cost_usd' is missing or empty"
    assert by_reason["missing_field"]["row"] == BAD_ROWS[0][1]
    assert by_reason["quality_nan"]["row"]["quality"] == "nan"
    assert by_reason["duplicate_request_model"]["detail"] == (
        "request_id 'r0' x model 'gpt-4o' already has an outcome (first at log.jsonl:2)"
    )
    assert by_reason["conflicting_request_id"]["detail"].startswith("request_id 'r1' was first used for a different prompt at log.jsonl:3")
    assert by_reason["unparseable_row"] == {
        "where": "log.jsonl:47",
        "reason": "unparseable_row",
        "detail": "not JSON: Expecting property name enclosed in double quotes at char 1",
        "row": {"raw": "{oops\n"},
    }

    manifest = json.loads((out / INGEST_MANIFEST).read_text(encoding="utf-8"))
    assert manifest["kind"] == "tierroute.ingest" and manifest["version"] == 1
    assert manifest["config"] == {
        "paths": [str(src)],
        "format": "auto",
        "out_dir": "out",
        "max_bad_fraction": 0.5,
        "correct_threshold": 0.5,
        "mapping": {},
        "catalogue": None,
        "exclude_contaminated": True,
    }
    assert manifest["rows_read"] == 47 and manifest["rows_kept"] == 40 and manifest["rows_quarantined"] == 7
    assert manifest["quarantine_by_reason"] == dict(sorted(result.reasons.items()))
    assert manifest["quarantine_file"] == str(Path("out") / "quarantine.jsonl")
    assert manifest["requests"] == 20 and manifest["models"] == sorted(MODELS)
    assert manifest["tasks"] == {"triage": 20}
    assert manifest["formats"] == {"outcomes": 1}
    assert manifest["inputs"] == [
        {"path": str(src), "format": "outcomes", "sha256": hashlib.sha256(src.read_bytes()).hexdigest(), "rows": 47, "quarantined": 7}
    ]
    assert manifest == {"kind": "tierroute.ingest", "version": 1, "config": manifest["config"], **result.summary()}


def test_default_out_dir_is_under_runs(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(2))
    result = ingest(src, out=None)
    assert re.fullmatch(r"runs/ingest-\d{8}-\d{6}-\d{6}", result.out_dir.as_posix())
    assert (tmp_path / result.out_dir / INGEST_MANIFEST).is_file()


def test_progress_reports_each_file(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(2))
    messages: list[str] = []
    run_ingest(IngestConfig(paths=(str(src),), out_dir="out"), progress=messages.append)
    assert messages == [f"reading {src} as outcomes"]


def test_correct_threshold_and_mapping_reach_the_rows(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "t", "llm": "m", "f1": 0.6, "usd": 0.01}, {"id": "b", "text": "u", "llm": "m", "f1": 0.9, "usd": 0.01}]
    src = write_jsonl(tmp_path / "f1.jsonl", rows)
    mapping = (("request_id", "id"), ("prompt", "text"), ("model", "llm"), ("quality", "f1"), ("cost_usd", "usd"))
    result = ingest(src, mapping=mapping, correct_threshold=0.75)
    assert result.to_pandas()["correct"].tolist() == [False, True]
    manifest = json.loads((tmp_path / "out" / INGEST_MANIFEST).read_text(encoding="utf-8"))
    assert manifest["config"]["mapping"] == dict(mapping)


# --- the cap -------------------------------------------------------------------------------------


def test_too_many_bad_rows_fail_and_still_write_the_quarantine(tmp_path: Path) -> None:
    bad = [BAD_ROWS[0][1], BAD_ROWS[3][1]]
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(5) + bad)  # 2 of 12 bad
    with pytest.raises(DataValidationError) as err:
        ingest(src)
    out = Path("out")
    assert str(err.value) == (
        "2 of 12 rows (16.7%) failed validation, above the cap of 5.0% (quarantined: missing_field 1, "
        f"negative_cost 1); see {out / 'quarantine.jsonl'}. Fix the source rows, or raise --max-bad if this is expected."
    )
    assert [line["reason"] for line in quarantine(tmp_path / "out")] == ["missing_field", "negative_cost"]
    assert not (tmp_path / "out" / INGEST_MANIFEST).exists()
    assert not (tmp_path / "out" / "outcomes").exists()


def test_the_cap_is_inclusive(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(10)[:19] + [BAD_ROWS[0][1]])  # 1 of 20 = 5%
    result = ingest(src)
    assert result.rows_kept == 19 and result.reasons == {"missing_field": 1}
    with pytest.raises(DataValidationError, match=r"^1 of 20 rows \(5\.0%\) failed validation, above the cap of 4\.0%"):
        ingest(src, out="out2", max_bad_fraction=0.04)


def test_zero_good_rows_fail(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", [BAD_ROWS[1][1]], ("[1]",))
    with pytest.raises(DataValidationError) as err:
        ingest(src, max_bad_fraction=1.0)
    assert str(err.value) == (
        f"No valid outcome rows in 2 read (quarantined: unparseable_row 1, wrong_type 1); see {Path('out') / 'quarantine.jsonl'}. "
        "Check the --format and the column names."
    )
    assert len(quarantine(tmp_path / "out")) == 2


def test_contaminated_rows_do_not_count_against_the_cap(tmp_path: Path) -> None:
    assert EXCLUSION_REASONS == {"contaminated"}
    folder = tmp_path / "toy"
    folder.mkdir()
    mixtral, gpt4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    with (folder / "mmlu_toy.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", mixtral, gpt4])
        writer.writerows([["Q one?", "True", "True"], ["Q two?", "False", "True"], ["Q three?", "True", "False"]])
    write_jsonl(folder / "contaminated_prompts.jsonl", [{"eval_prompt": "Q one?"}, {"eval_prompt": "Q two?"}])
    result = ingest(folder)  # 4 of 6 rows excluded, none bad: passes the default 5% cap
    assert result.reasons == {"contaminated": 4}
    assert result.rows_kept == 2
    assert result.formats == {"routellm": 1}
    assert {line["detail"] for line in quarantine(tmp_path / "out")} == {"listed in contaminated_prompts.jsonl"}
    kept = ingest(folder, out="out2", exclude_contaminated=False)
    assert kept.rows_kept == 6 and kept.reasons == {}


# --- the output folder and the paths ------------------------------------------------------------


def test_existing_non_empty_out_is_refused_and_left_untouched(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(2))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes", encoding="utf-8")
    with pytest.raises(OutputDirError) as err:
        ingest(src, out="mine")
    assert str(err.value) == (
        "Output folder 'mine' already exists and is not empty; tierroute never writes over existing files. "
        "Pass a new --out folder (or leave --out out for a fresh one under runs/)."
    )
    assert isinstance(err.value, FileExistsError)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "my notes"


def test_existing_empty_out_is_used_and_a_file_is_refused(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(2))
    (tmp_path / "empty").mkdir()
    assert ingest(src, out="empty").rows_kept == 4
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(OutputDirError, match=r"^Output folder 'afile' already exists and is not empty"):
        ingest(src, out="afile")
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "x"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as err:
        ingest("nope.jsonl")
    assert str(err.value) == f"No such file or folder: 'nope.jsonl'. Check the path (relative to {tmp_path})."
    assert not (tmp_path / "out").exists()


def test_unrecognised_named_file(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        ingest(other)
    assert str(err.value) == (
        f"Cannot tell the format of {str(other)!r}: it is not a RouterBench table, a RouteLLM correctness CSV, "
        "nor an outcome file with request_id and model columns. Pass --format, or --map canonical=column for other column names."
    )


def test_a_format_error_leaves_out_reusable(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError):
        ingest(other)
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(2))
    assert ingest(src).rows_kept == 4


def test_a_folder_input(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    write_jsonl(folder / "a.jsonl", good_rows(3, task="triage", prefix="a"))
    with (folder / "b.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(good_rows(1)[0]))
        writer.writeheader()
        writer.writerows(good_rows(2, task="summary", prefix="b"))
    (folder / "unknown.csv").write_text("x,y\n1,2\n", encoding="utf-8")  # unrecognised: skipped in a folder
    (folder / "readme.txt").write_text("not data\n", encoding="utf-8")  # not an outcome suffix
    write_jsonl(folder / "contaminated_prompts.jsonl", [{"eval_prompt": "x"}])  # skipped by name
    write_jsonl(folder / "test.jsonl", [{"question": "x"}])  # skipped by name
    (folder / "sub").mkdir()
    write_jsonl(folder / "sub" / "c.jsonl", good_rows(1, prefix="c"))  # not recursive
    result = ingest(folder)
    assert result.rows_read == 10 and result.rows_kept == 10 and result.reasons == {}
    assert result.formats == {"outcomes": 2}
    assert [Path(i["path"]).name for i in result.inputs] == ["a.jsonl", "b.csv"]
    assert result.summary()["tasks"] == {"summary": 2, "triage": 3}


def test_a_folder_without_outcome_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        ingest(tmp_path / "empty")
    assert str(err.value) == (
        f"Folder {str(tmp_path / 'empty')!r} holds no outcome files (.jsonl, .csv, .parquet, .pkl). "
        "Point at the files themselves or at the folder that holds them."
    )


def test_a_previous_run_folder_is_ingested_again(tmp_path: Path) -> None:
    rows = good_rows(4)
    rows[0].update(output_schema={"label": "a | b"}, latency_sla_ms=150, timestamp="2024-01-02T03:04:05Z", propensity=0.5, chosen=True)
    src = write_jsonl(tmp_path / "log.jsonl", rows + [BAD_ROWS[0][1]])
    first = ingest(src, out="run1", max_bad_fraction=0.5)
    second = ingest("run1", out="run2")
    assert second.formats == {"ingested": 1}
    assert second.reasons == {}
    assert second.inputs == [{"path": "run1", "format": "ingested", "sha256": None, "rows": 8, "quarantined": 0}]
    assert second.to_pandas().equals(first.to_pandas())
    record = second.dataset[0]
    assert record["output_schema"] == '{"label": "a | b"}'
    assert record["timestamp"] == "2024-01-02T03:04:05+00:00" and record["propensity"] == 0.5 and record["chosen"] is True
    # with a new file beside it, ids already in the run are checked against the new rows
    extra = write_jsonl(tmp_path / "more.jsonl", [{**good_rows(1)[0], "model": "gpt-4o-mini"}, BAD_ROWS[5][1]])
    third = ingest("run1", extra, out="run3", max_bad_fraction=0.5)
    assert third.rows_kept == 9 and third.reasons == {"conflicting_request_id": 1}
    assert third.formats == {"ingested": 1, "outcomes": 1}


def test_forced_format(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", good_rows(2))
    assert ingest(src, format="outcomes").formats == {"outcomes": 1}


# --- IngestConfig -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"format": "xml"},
            "The 'format' parameter of IngestConfig must be one of auto, routerbench, routellm, outcomes. Got 'xml' instead.",
        ),
        (
            {"max_bad_fraction": 2},
            "The 'max_bad_fraction' parameter of IngestConfig must be a finite number in the range [0, 1]. Got 2 instead.",
        ),
        (
            {"max_bad_fraction": -0.1},
            "The 'max_bad_fraction' parameter of IngestConfig must be a finite number in the range [0, 1]. Got -0.1 instead.",
        ),
        (
            {"max_bad_fraction": math.nan},
            "The 'max_bad_fraction' parameter of IngestConfig must be a finite number in the range [0, 1]. Got nan instead.",
        ),
        (
            {"max_bad_fraction": "0.1"},
            "The 'max_bad_fraction' parameter of IngestConfig must be a finite number in the range [0, 1]. Got '0.1' instead.",
        ),
        (
            {"correct_threshold": 1.5},
            "The 'correct_threshold' parameter of IngestConfig must be a finite number in the range [0, 1]. Got 1.5 instead.",
        ),
        ({"paths": ()}, "IngestConfig needs at least one path to an outcome file or folder."),
    ],
)
def test_ingest_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        IngestConfig(**{"paths": ("x.jsonl",), **kwargs})
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


def test_ingest_config_normalises_and_round_trips(tmp_path: Path) -> None:
    config = IngestConfig(paths=[tmp_path / "a.jsonl"], mapping=[["quality", "f1"]])  # type: ignore[arg-type]
    assert config.paths == (str(tmp_path / "a.jsonl"),)
    assert config.mapping == (("quality", "f1"),)
    d = config.to_dict()
    assert d["paths"] == [str(tmp_path / "a.jsonl")] and d["mapping"] == {"quality": "f1"}
    assert IngestConfig(**{**d, "mapping": tuple(d["mapping"].items())}) == config


# --- real data ----------------------------------------------------------------------------------


def _arc_expectations(path: Path) -> tuple[int, int, set[str], int]:
    """(NaN score cells, non-NaN cells of rows that reuse an id for another prompt, those ids, rows)
    counted straight from the CSV."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        models = [c for c in header if c + "|total_cost" in header]
        nan_cells, conflict_cells, first_prompt, reused, n = 0, 0, {}, set(), 0
        for row in reader:
            n += 1
            empty = [m for m in models if row[m].strip().lower() in ("", "nan")]
            nan_cells += len(empty)
            sid = row["sample_id"]
            if sid in first_prompt and first_prompt[sid] != row["prompt"]:
                reused.add(sid)
                conflict_cells += len(models) - len(empty)
            first_prompt.setdefault(sid, row["prompt"])
    return nan_cells, conflict_cells, reused, n


@pytest.mark.shared_data
def test_real_arc_challenge_train_problems_are_reported(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "routerbench" / "routerbench_zs" / "arc_challenge_train.csv"
    nan_cells, conflict_cells, reused, n_rows = _arc_expectations(path)
    assert len(reused) == 7 and n_rows == 1039
    result = ingest(path)  # default cap 5%
    assert result.rows_read == n_rows * 11
    assert result.reasons["quality_nan"] == nan_cells > 0
    assert result.reasons["conflicting_request_id"] == conflict_cells > 0
    assert set(result.reasons) == {"quality_nan", "conflicting_request_id"}
    assert result.rows_quarantined / result.rows_read < 0.05
    lines = quarantine(tmp_path / "out")
    conflicting = [line for line in lines if line["reason"] == "conflicting_request_id"]
    assert {line["row"]["request_id"] for line in conflicting} == reused
    assert all(line["row"]["quality"] == "nan" for line in lines if line["reason"] == "quality_nan")
    summary = result.summary()
    assert summary["requests"] == n_rows - len(reused)
    assert summary["tasks"] == {"arc-challenge": n_rows - len(reused)}
    assert len(summary["models"]) == 11
    manifest = json.loads((tmp_path / "out" / INGEST_MANIFEST).read_text(encoding="utf-8"))
    assert manifest["quarantine_by_reason"] == {"conflicting_request_id": conflict_cells, "quality_nan": nan_cells}
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.shared_data
def test_real_routerbench_folder(shared_data: Path) -> None:
    folder = shared_data / "routerbench" / "routerbench_zs"
    result = ingest(folder)
    summary = result.summary()
    assert len(summary["models"]) == 11
    assert set(summary["tasks"]) == {"arc-challenge", "mbpp", "winogrande"}
    assert result.formats == {"routerbench": 6}
    assert sorted(Path(i["path"]).name for i in result.inputs) == sorted(p.name for p in folder.glob("*.csv"))
    assert result.rows_read == 3178 * 11
    assert set(result.reasons) <= {"quality_nan", "conflicting_request_id"}
    frame = result.to_pandas()
    assert (frame["cost_usd"] > 0).all()
    assert frame.groupby("request_id")["model"].nunique().max() == 11
    assert summary["tasks"]["mbpp"] == 299 + 128  # MBPP is clean


@pytest.mark.shared_data
def test_real_routellm_gsm8k_folder(shared_data: Path) -> None:
    result = ingest(shared_data / "routellm" / "gsm8k")
    assert result.reasons == {"contaminated": 24}  # 12 prompts x 2 models
    assert result.formats == {"routellm": 1}  # test.jsonl and contaminated_prompts.jsonl are skipped
    summary = result.summary()
    assert summary["models"] == ["gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert summary["tasks"] == {"gsm8k": 1319 - 12}
    assert result.rows_kept == 2 * (1319 - 12)
    assert Counter(result.to_pandas()["model"]) == Counter({m: 1307 for m in summary["models"]})


@pytest.mark.parametrize("name,content,fmt", [("broken.pkl", b"garbage", "routerbench"), ("broken.parquet", b"junk\n", "outcomes")])
def test_a_file_that_breaks_mid_read_is_one_clear_error(tmp_path: Path, name: str, content: bytes, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=rf"^Could not read '.*{name}' as {fmt}: \w+: .* Check that the file is complete"):
        run_ingest(IngestConfig(paths=(str(path),), out_dir=str(tmp_path / "out")))


def test_folder_files_passed_over_are_listed_not_dropped(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_jsonl(logs / "train.jsonl", good_rows(3, prefix="a"))
    write_jsonl(logs / "test.jsonl", good_rows(3, prefix="b"))
    (logs / "notes.md").write_text("not data", encoding="utf-8")
    result = ingest(logs)
    assert result.rows_read == 12  # train.jsonl and test.jsonl are ordinary outcome files here
    assert result.skipped == [f"{logs / 'notes.md'} (not an outcome file)"]
    assert json.loads((result.out_dir / "ingest.json").read_text())["skipped_files"] == result.skipped


def test_routellm_side_files_are_skipped_and_listed(shared_data: Path) -> None:
    result = ingest(shared_data / "routellm" / "gsm8k")
    assert sorted(Path(s.split(" ")[0]).name for s in result.skipped) == ["contaminated_prompts.jsonl", "test.jsonl"]


def test_a_json_array_file_and_a_csv_with_a_bom(tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text(json.dumps(good_rows(2), indent=2), encoding="utf-8")
    rows = good_rows(2, prefix="c")
    with (tmp_path / "rows.csv").open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = ingest(tmp_path / "rows.json", tmp_path / "rows.csv")
    assert (result.rows_read, result.rows_quarantined) == (8, 0)


def test_empty_inputs_say_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"^The input holds no data rows \(.*empty\.jsonl\)\. Check that you pointed"):
        ingest(empty)


def test_mapping_may_be_a_dict() -> None:
    assert IngestConfig(paths=("x",), mapping={"quality": "f1"}).mapping == (("quality", "f1"),)
    with pytest.raises(ConfigError, match=r"^The 'mapping' parameter of IngestConfig must be a dict or \(field, column\) pairs"):
        IngestConfig(paths=("x",), mapping=("quality=f1",))


def test_a_loaded_catalogue_prices_routellm_rows_and_wins_over_the_config(tmp_path: Path) -> None:
    from tierroute.models.catalogue import builtin_catalogue, load_catalogue
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest

    mixtral, gpt4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    (tmp_path / "mmlu_toy.csv").write_text(f"prompt,{mixtral},{gpt4}\nWhat is 2+2?,True,False\n", encoding="utf-8")
    (tmp_path / "mine.toml").write_text(
        'schema_version = 1\nname = "mine"\ntiers = ["tier1", "tier3"]\n'
        f'[[candidates]]\nmodel = "{mixtral}"\ntier = "tier1"\ninput_per_1k = 1.0\noutput_per_1k = 1.0\n'
        f'[[candidates]]\nmodel = "{gpt4}"\ntier = "tier3"\ninput_per_1k = 100.0\noutput_per_1k = 100.0\n',
        encoding="utf-8",
    )

    def costs(out: str, **kwargs: Any) -> dict[str, float]:
        config = IngestConfig(paths=(str(tmp_path / "mmlu_toy.csv"),), out_dir=str(tmp_path / out), catalogue="routellm")
        frame = run_ingest(config, **kwargs).to_pandas()
        return dict(zip(frame["model"], frame["cost_usd"]))

    builtin, mine = costs("a"), costs("b", catalogue=load_catalogue(tmp_path / "mine.toml"))
    assert builtin == costs("c", catalogue=builtin_catalogue("routellm"))
    assert mine[gpt4] / mine[mixtral] == pytest.approx(100.0)
    assert mine[gpt4] > 1000 * builtin[gpt4]


# --- row origins: which given path each kept row came from --------------------------------------


def test_row_origins_of_two_files_follow_the_kept_rows(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", good_rows(3, prefix="a") + [BAD_ROWS[0][1]])  # 6 kept, 1 quarantined
    second = write_jsonl(tmp_path / "b.jsonl", good_rows(2, prefix="b") + [BAD_ROWS[3][1]])  # 4 kept, 1 quarantined
    result = ingest(first, second, max_bad_fraction=0.5)
    origins = result.row_origins()
    assert origins.tolist() == [0] * 6 + [1] * 4
    assert len(origins) == result.rows_kept
    # aligned with the table row by row
    ids = result.to_pandas()["request_id"].tolist()
    assert [i[0] for i in ids] == ["a" if o == 0 else "b" for o in origins]
    swapped = ingest(second, first, out="out2", max_bad_fraction=0.5)
    assert swapped.row_origins().tolist() == [0] * 4 + [1] * 6


def test_row_origins_of_a_folder_are_the_folder_s_index(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    write_jsonl(folder / "a.jsonl", good_rows(2, prefix="a"))
    write_jsonl(folder / "b.jsonl", good_rows(1, prefix="b"))
    (folder / "notes.md").write_text("not data", encoding="utf-8")  # passed over: no rows, no origin
    single = write_jsonl(tmp_path / "c.jsonl", good_rows(3, prefix="c"))
    result = ingest(single, folder)
    assert [Path(i["path"]).name for i in result.inputs] == ["c.jsonl", "a.jsonl", "b.jsonl"]
    assert result.origins == [0, 1, 1]
    assert result.row_origins().tolist() == [0] * 6 + [1] * 6
    ids = result.to_pandas()["request_id"].tolist()
    assert all((i[0] == "c") == (o == 0) for i, o in zip(ids, result.row_origins()))
    # a previous run's folder counts as one path too
    extra = write_jsonl(tmp_path / "d.jsonl", good_rows(1, prefix="d"))
    again = ingest("out", extra, out="out2")
    assert again.formats == {"ingested": 1, "outcomes": 1}
    assert again.row_origins().tolist() == [0] * 12 + [1] * 2


def test_row_origins_skip_a_fully_quarantined_file(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", good_rows(10))
    bad = write_jsonl(tmp_path / "bad.jsonl", [row for _, row in BAD_ROWS[:2]])
    result = ingest(bad, good, max_bad_fraction=0.5)
    assert result.row_origins().tolist() == [1] * 20


def test_prompts_are_stored_with_64_bit_offsets() -> None:
    # a million logged prompts pass the 2 GB that 32-bit string offsets address (found by bench/retrain.py at 1M rows)
    from tierroute.pipelines.data.ingest import outcome_features

    features = outcome_features()
    assert features["prompt"].dtype == "large_string" and features["output_schema"].dtype == "large_string"
    assert str(features.arrow_schema.field("prompt").type) == "large_string"


# --- hostile input: every line read is kept or quarantined, and the run never aborts -------------


def _line(request_id: str, **change: Any) -> bytes:
    row = {
        "request_id": request_id,
        "prompt": f"Classify ticket {request_id}.",
        "model": "gpt-4o",
        "quality": 1,
        "cost_usd": 0.12,
        "task": "triage",
    }
    return json.dumps({**row, **change}).encode()


def test_a_jsonl_mixing_every_bad_line_kind_loses_no_line(tmp_path: Path) -> None:
    lines = [
        b"\xef\xbb\xbf" + _line("bom"),  # a BOM before a valid first row
        _line("g1"),
        _line("sur").replace(b"Classify", b"\\ud800Classify"),  # a lone surrogate in the prompt
        _line("q400").replace(b'"quality": 1', b'"quality": ' + b"9" * 400),  # a 400-digit quality
        _line("c400").replace(b'"cost_usd": 0.12', b'"cost_usd": ' + b"9" * 400),
        # NaN (which Python's json writes) is still read, so this 400-digit cost reaches the validator
        _line("nan400").replace(b'"cost_usd": 0.12', b'"latency_ms": NaN, "cost_usd": ' + b"9" * 400),
        _line("utf8").replace(b"Classify", b"Cl\xffassify"),  # not UTF-8
        _line("d5000").replace(b'"task"', b'"x": ' + b"9" * 5000 + b', "task"'),  # a 5,000-digit number
        _line("deep").replace(b'"task"', b'"x": ' + b"[" * 5000 + b"]" * 5000 + b', "task"'),  # 5,000 deep
        _line("g2"),
    ]
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    result = ingest(src, max_bad_fraction=0.9)
    physical = src.read_bytes().count(b"\n")
    assert result.rows_read == physical == len(lines) == result.rows_kept + result.rows_quarantined
    assert sorted(result.to_pandas()["request_id"]) == ["bom", "g1", "g2"]
    assert result.reasons == {"bad_encoding": 2, "unparseable_row": 4, "wrong_type": 1}
    quarantined = quarantine(tmp_path / "out")  # every line is UTF-8 JSON, whatever the row held
    (tmp_path / "out" / "quarantine.jsonl").read_bytes().decode("utf-8")
    assert len(quarantined) == result.rows_quarantined
    by_where = {q["where"]: q for q in quarantined}
    assert set(by_where) == {f"hostile.jsonl:{n}" for n in range(3, 10)}
    assert by_where["hostile.jsonl:3"]["detail"].startswith("prompt holds a lone surrogate (U+D800) at character 0")
    assert by_where["hostile.jsonl:3"]["row"]["prompt"] == "\\ud800Classify ticket sur."
    assert by_where["hostile.jsonl:4"]["detail"].startswith("line 4 holds a number written with 400 characters")
    assert by_where["hostile.jsonl:6"]["detail"] == (
        "cost_usd must be a finite number; got an integer of 400 digits (int), beyond a float's range (about 1.8e308)"
    )
    assert by_where["hostile.jsonl:7"]["reason"] == "bad_encoding" and "Cl\\xffassify" in by_where["hostile.jsonl:7"]["row"]["raw"]
    assert by_where["hostile.jsonl:9"]["detail"].startswith("line 9 nests arrays/objects more than 64 levels deep")
    assert result.inputs[0]["rows"] == physical and result.inputs[0]["quarantined"] == 7


def test_a_csv_with_bad_bytes_and_extra_cells_loses_no_row(tmp_path: Path) -> None:
    src = tmp_path / "hostile.csv"
    src.write_bytes(
        b"request_id,prompt,model,quality,cost_usd\n"
        b"a,Classify ticket a.,gpt-4o,1,0.12\n"
        b"b,Cl\xffassify,gpt-4o,1,0.12\n"  # not UTF-8
        b"c,Classify, please,gpt-4o,1,0.12\n"  # an unquoted comma: one cell too many
        b"d,Classify ticket d.,gpt-4o," + b"9" * 400 + b",0.12\n"
        b"e,Classify ticket e.,gpt-4o,1," + b"9" * 400 + b"\n"
        b'f,"Classify\nticket f.",gpt-4o,1,0.12\n'  # a quoted cell over two lines: one row
        b"g,Classify ticket g.,gpt-4o,1,0.12\n"
    )
    result = ingest(src, max_bad_fraction=0.9)
    assert result.rows_read == 7 == result.rows_kept + result.rows_quarantined
    assert sorted(result.to_pandas()["request_id"]) == ["a", "f", "g"]
    assert result.reasons == {"bad_encoding": 1, "unparseable_row": 1, "quality_out_of_range": 1, "wrong_type": 1}
    by_where = {q["where"]: q for q in quarantine(tmp_path / "out")}
    assert by_where["hostile.csv:3"]["row"]["prompt"] == "Cl\\xffassify"
    assert by_where["hostile.csv:4"]["row"]["_extra_cells"] == ["0.12"]
    assert by_where["hostile.csv:5"]["detail"] == "quality must be in [0, 1]; got inf"


def test_a_csv_that_cannot_be_split_is_refused_whole_and_leaves_out_reusable(tmp_path: Path) -> None:
    src = tmp_path / "open.csv"
    src.write_text(
        'request_id,prompt,model,quality,cost_usd\n1,p,m,1,0\n2,"never closed,m,1,0\n3,p,m,1,0\n4,p,m,1,0\n5,p,m,1,0\n', encoding="utf-8"
    )
    with pytest.raises(
        DataFormatError,
        match=r"^open\.csv: cannot split line 3 into cells reliably \(unexpected end "
        r"of data\): a quoted cell that starts there is never closed",
    ):
        ingest(src)
    assert not (tmp_path / "out").exists()  # nothing half-read stays behind
    assert ingest(write_jsonl(tmp_path / "log.jsonl", good_rows(2))).rows_kept == 4


def test_feature_only_rows_ingest_beside_text_rows_and_bad_ones_are_quarantined(tmp_path: Path) -> None:
    """Privacy mode's rows (a logged feature vector and its FeatureSpec fingerprint, no prompt)
    keep their vector, null for a missing value; a malformed one is quarantined as bad_features."""
    from tierroute.features.logged import LoggedRequest
    from tierroute.pipelines.data.dataset import RoutingData

    spec = "ab" * 32
    rows = [
        {"request_id": "t1", "prompt": "Classify this.", "model": "m1", "cost_usd": 0.1, "correct": True},
        {
            "request_id": "f1",
            "model": "m1",
            "cost_usd": 0.1,
            "correct": False,
            "chosen": True,
            "propensity": 0.5,
            "features": [3, None, 1.5],
            "feature_spec": spec,
        },
        {
            "request_id": "f2",
            "model": "m1",
            "cost_usd": 0.1,
            "correct": True,
            "chosen": True,
            "propensity": 0.5,
            "features": [3, "x"],
            "feature_spec": spec,
        },
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_ingest(IngestConfig(paths=(str(path),), out_dir=str(tmp_path / "out"), max_bad_fraction=0.5))
    assert result.rows_kept == 2 and result.reasons == {"bad_features": 1}
    [bad] = [json.loads(line) for line in result.quarantine_path.read_text(encoding="utf-8").splitlines()]
    assert bad["where"] == "mixed.jsonl:3" and bad["detail"] == "features[1] must be a finite number or null; got 'x' (str)"
    data = RoutingData.from_frame(result.to_pandas())
    text, logged = data.requests
    assert type(text) is not LoggedRequest and text.prompt == "Classify this."
    assert isinstance(logged, LoggedRequest) and logged.prompt == "" and logged.feature_spec == spec
    assert logged.features[0] == 3.0 and math.isnan(logged.features[1]) and logged.features[2] == 1.5
