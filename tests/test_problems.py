"""The problems stage: sources in every supported format become shards; bad rows become rejects
(the matrix of bad rows, files and configs is in test_bad_input.py)."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import PROJECT_ROOT, load
from pipeline.io.tables import REJECT_SCHEMA
from pipeline.stages.problems import run_problems

SAMPLE = PROJECT_ROOT / "pipeline" / "data" / "sample_problems.jsonl"
SAMPLE_IDS = [json.loads(line)["id"] for line in SAMPLE.read_text().splitlines()]


def config(source, **problems):
    return load(overrides={"problems": {"source": str(source), **problems}})


def shards(out_dir) -> list[list[dict]]:
    return [pq.read_table(p).to_pylist() for p in sorted(out_dir.glob("shard-*.parquet"))]


def problems(out_dir) -> list[dict]:
    return [row for shard in shards(out_dir) for row in shard]


def rejects(out_dir) -> list[dict]:
    return pq.read_table(out_dir / "rejects.parquet").to_pylist()


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """Keep `datasets` from writing its cache into the home directory."""
    datasets_config = pytest.importorskip("datasets.config")
    monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def test_sample_file_makes_two_shards_of_eight(tmp_path):
    stats = run_problems(config(SAMPLE, shard_size=8), tmp_path / "out")

    got = shards(tmp_path / "out")
    assert [len(s) for s in got] == [8, 8]
    assert [p["problem_id"] for p in problems(tmp_path / "out")] == SAMPLE_IDS
    assert got[0][0] == {
        "problem_id": "add-2-3",
        "problem": "What is 2 + 3?",
        "answer": "5",
        "source": str(SAMPLE),
        "meta": "{}",
    }
    assert rejects(tmp_path / "out") == []
    assert pq.read_schema(tmp_path / "out" / "rejects.parquet").names == REJECT_SCHEMA.names
    assert stats == json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats | {"wall_s": 0} == {
        "source": str(SAMPLE),
        "rows_read": 16,
        "problems": 16,
        "rejected": 0,
        "rejects_by_reason": {},
        "reference_read": {"plain": 16, "gsm8k": 0, "boxed": 0},
        "answers": {
            "kinds": {"math": 16, "text": 0, "suspicious": 0, "unreadable": 0},
            "with_equivalent_forms": 0,
            "unreadable_ids": [],
            "suspicious_ids": [],
        },
        "shards": 2,
        "wall_s": 0,
    }


def test_shard_size_five_makes_four_shards_in_source_order(tmp_path):
    run_problems(config(SAMPLE, shard_size=5), tmp_path / "out")

    assert [len(s) for s in shards(tmp_path / "out")] == [5, 5, 5, 1]
    names = sorted(p.name for p in (tmp_path / "out").glob("shard-*"))
    assert names == [f"shard-{i:05d}.parquet" for i in range(4)]
    assert [p["problem_id"] for p in problems(tmp_path / "out")] == SAMPLE_IDS


def test_rerun_with_fewer_shards_removes_the_stale_ones(tmp_path):
    run_problems(config(SAMPLE, shard_size=5), tmp_path / "out")
    run_problems(config(SAMPLE, shard_size=8), tmp_path / "out")

    assert [len(s) for s in shards(tmp_path / "out")] == [8, 8]


def test_ids_are_stable_across_runs(tmp_path):
    run_problems(config(SAMPLE), tmp_path / "a")
    run_problems(config(SAMPLE), tmp_path / "b")
    assert problems(tmp_path / "a") == problems(tmp_path / "b")


def test_derived_ids_are_stable_and_come_from_the_problem_text(tmp_path):
    run_problems(config(SAMPLE, fields={"id": None}), tmp_path / "a")
    run_problems(config(SAMPLE, fields={"id": None}), tmp_path / "b")

    first, second = problems(tmp_path / "a"), problems(tmp_path / "b")
    assert [p["problem_id"] for p in first] == [p["problem_id"] for p in second]
    expected = "p-" + hashlib.sha256(b"What is 2 + 3?").hexdigest()[:12]
    assert first[0]["problem_id"] == expected
    assert len({p["problem_id"] for p in first}) == 16
    # With the id column unmapped it is just another field, kept in meta.
    assert json.loads(first[0]["meta"]) == {"id": "add-2-3"}


def test_raw_of_a_rejected_row_is_cut_to_2000_characters(tmp_path):
    source = tmp_path / "long.jsonl"
    write_jsonl(source, [{"problem": "ok?", "answer": "1"}, {"problem": "x" * 5000, "answer": None}])

    run_problems(config(source, fields={"id": None}), tmp_path / "out")

    (reject,) = rejects(tmp_path / "out")
    assert len(reject["raw"]) == 2000


def test_duplicate_problem_text_is_rejected_when_ids_are_derived(tmp_path):
    source = tmp_path / "dup.jsonl"
    write_jsonl(source, [{"problem": "Same?", "answer": "1"}, {"problem": " Same? ", "answer": "2"}])

    run_problems(config(source, fields={"id": None}), tmp_path / "out")

    (reject,) = rejects(tmp_path / "out")
    assert (reject["row"], reject["field"]) == (1, "problem")
    assert "row 0" in reject["reason"]


def test_csv_keeps_every_cell_as_written(tmp_path):
    source = tmp_path / "problems.csv"
    source.write_text(
        "question,solution,topic\n"
        '"Is it known?",NA,logic\n'
        '"Which code, with zeros?",007,codes\n'
        '"A problem\nover two lines",3,text\n'
        '"No answer",,logic\n'
        '"Too many cells",1,a,b\n'
    )

    fields = {"problem": "question", "answer": "solution", "id": None}
    run_problems(config(source, fields=fields), tmp_path / "out")

    kept = problems(tmp_path / "out")
    assert [(p["problem"], p["answer"]) for p in kept] == [
        ("Is it known?", "NA"),
        ("Which code, with zeros?", "007"),
        ("A problem\nover two lines", "3"),
    ]
    assert json.loads(kept[0]["meta"]) == {"topic": "logic"}
    assert [(r["row"], r["field"]) for r in rejects(tmp_path / "out")] == [(3, "answer"), (4, "row")]


def test_csv_with_undecodable_bytes_rejects_only_that_row(tmp_path):
    source = tmp_path / "latin1.csv"
    source.write_bytes(b"problem,answer\nWhat is 1 + 1?,2\nCaf\xe9?,3\n")

    run_problems(config(source, fields={"id": None}), tmp_path / "out")

    assert [p["problem"] for p in problems(tmp_path / "out")] == ["What is 1 + 1?"]
    (reject,) = rejects(tmp_path / "out")
    assert (reject["row"], reject["field"], reject["reason"]) == (1, "problem", "not valid UTF-8")


def test_parquet_numbers_become_clean_text(tmp_path):
    source = tmp_path / "problems.parquet"
    table = pa.table(
        {
            "problem": ["What is 2 + 3?", "Half of 5?", "Missing answer?", "What is 6 / 2?"],
            "answer": [5.0, 2.5, None, 3.0],
            "id": [10, 11, 12, 13],
        }
    )
    pq.write_table(table, source)

    run_problems(config(source), tmp_path / "out")

    kept = [(p["problem_id"], p["answer"]) for p in problems(tmp_path / "out")]
    assert kept == [("10", "5"), ("11", "2.5"), ("13", "3")]
    assert [(r["row"], r["field"], r["problem_id"]) for r in rejects(tmp_path / "out")] == [
        (2, "answer", "12")
    ]


@pytest.mark.parametrize(
    "wrap", [lambda rows: rows, lambda rows: {"version": "1.0", "data": rows}], ids=["list", "data-key"]
)
def test_json_list_or_object_holding_a_list(tmp_path, wrap):
    source = tmp_path / "problems.json"
    rows = [
        {"id": "a", "problem": "What is 1 + 2?", "answer": 3},
        "not an object",
        {"id": "b", "problem": "Q?", "answer": "x"},
    ]
    source.write_text(json.dumps(wrap(rows)))

    run_problems(config(source), tmp_path / "out")

    assert [(p["problem_id"], p["answer"]) for p in problems(tmp_path / "out")] == [("a", "3"), ("b", "x")]
    assert [(r["row"], r["field"]) for r in rejects(tmp_path / "out")] == [(1, "row")]


def test_json_without_a_list_is_a_clear_error(tmp_path):
    source = tmp_path / "problems.json"
    source.write_text(json.dumps({"a": [], "b": []}))

    with pytest.raises(ValueError, match="list of objects"):
        run_problems(config(source), tmp_path / "out")


@pytest.mark.parametrize("filename", ["train.jsonl", "train.parquet"])
def test_local_hugging_face_dataset_folder_loads_through_datasets(tmp_path, filename):
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"question": "What is 2 + 2?", "final": 4}, {"question": "What is 3 + 3?", "final": 6}]
    if filename.endswith(".jsonl"):
        write_jsonl(folder / filename, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), folder / filename)

    cfg = config(folder, split="train", fields={"problem": "question", "answer": "final", "id": None})
    stats = run_problems(cfg, tmp_path / "out")

    kept = [(p["problem"], p["answer"]) for p in problems(tmp_path / "out")]
    assert kept == [("What is 2 + 2?", "4"), ("What is 3 + 3?", "6")]
    assert stats["source"] == str(folder)


@pytest.mark.parametrize("name", ["missing.jsonl", "missing.csv", "nested/missing.parquet"])
def test_missing_local_file_raises_before_writing(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="missing"):
        run_problems(config(tmp_path / name), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_no_valid_rows_raises_and_keeps_the_rejects(tmp_path):
    source = tmp_path / "bad.jsonl"
    write_jsonl(
        source, [{"id": "a", "problem": "", "answer": "1"}, {"id": "b", "problem": "Q?", "answer": ""}]
    )

    with pytest.raises(ValueError, match=r"no valid problems in .*bad\.jsonl: 2 rows read, 2 rejected"):
        run_problems(config(source), tmp_path / "out")

    assert [r["problem_id"] for r in rejects(tmp_path / "out")] == ["a", "b"]
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["rejected"] == 2
    assert list((tmp_path / "out").glob("shard-*")) == []


def test_limit_keeps_the_first_n_valid_problems(tmp_path):
    source = tmp_path / "some-bad.jsonl"
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    rows.insert(1, {"id": "bad", "problem": None, "answer": "1"})
    write_jsonl(source, rows)

    stats = run_problems(config(source, limit=3, shard_size=2), tmp_path / "out")

    assert [p["problem_id"] for p in problems(tmp_path / "out")] == SAMPLE_IDS[:3]
    assert [len(s) for s in shards(tmp_path / "out")] == [2, 1]
    assert (stats["rows_read"], stats["problems"], stats["rejected"]) == (4, 3, 1)
