"""Export formats on hand-built trees, and the export stage on a small run written by hand."""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import config as config_mod
from pipeline.formats import FORMATS
from pipeline.formats.paths import path_text, wrong_leaves
from pipeline.formats.preference import preference_pairs
from pipeline.formats.revision import REVISE, revision_rows
from pipeline.formats.sft import o1_journey_row
from pipeline.formats.step_preference import step_pairs
from pipeline.formats.stepwise import stepwise_rows
from pipeline.io.hub import LocalRepos, push_to_hub
from pipeline.io.tables import NODE_SCHEMA, POLISHED_SCHEMA, PROBLEM_SCHEMA, write_json, write_table
from pipeline.stages.export import run_export
from trees.model import Node, Tree, nodes_to_table
from trees.values import assign_tree_values

PROBLEM = "What is 2 + 2?"


def mc(verdict: str) -> list[dict]:
    return [{"scorer": "monte-carlo", "verdict": verdict, "score": 1.0 if verdict == "correct" else 0.0}]


def tree(pid: str = "p") -> Tree:
    """Two correct leaves, four wrong ones (two with the same text), one step the critic left unjudged
    (Monte-Carlo judged it)."""

    def node(i, parent, step, verdict="correct", terminal=False, correct=None, answer=None):
        depth = 1 if parent == 0 else 2
        return Node(
            pid, i, parent, depth, step, terminal, answer, correct, None, verdict, "", "critic",
            annotations=mc("incorrect" if correct is False else "correct"),
        )  # fmt: skip

    t = Tree(
        pid,
        [
            Node(pid, 0, -1, 0, PROBLEM),
            node(1, 0, "Add the two numbers."),
            node(2, 1, "2 + 2 = 4, so \\boxed{4}.", terminal=True, correct=True, answer="4"),
            node(3, 1, "2 + 2 = 5, so \\boxed{5}.", "incorrect", True, False, "5"),
            node(4, 0, "Four, so \\boxed{4}.", terminal=True, correct=True, answer="4"),
            node(5, 0, "Multiply: 2 * 3 = 6, so \\boxed{6}.", "incorrect", True, False, "6"),
            node(6, 0, "Subtract: 2 - 2 = 0, so \\boxed{0}.", "incorrect", True, False, "0"),
            node(7, 0, "Subtract: 2 - 2 = 0, so \\boxed{0}.", "incorrect", True, False, "0"),
            node(8, 1, "A duplicate step.", "unknown"),
        ],
        reference="4",
    )
    assign_tree_values(t)  # as the trees stage stores them
    return t


def test_preference_pairs_pair_a_correct_leaf_with_a_wrong_leaf_of_the_same_tree_without_repeats():
    t = tree()
    distinct = len(t.correct_leaves()) * 3  # leaves 6 and 7 wrote the same text
    pairs = preference_pairs(t, random.Random(0), 100)
    assert len(pairs) == distinct
    assert len({(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}) == distinct
    for p in pairs:
        assert p["problem_id"] == "p" and p["prompt"] == [{"role": "user", "content": PROBLEM}]
        assert t.nodes[p["chosen_leaf"]].answer_correct is True
        assert t.nodes[p["rejected_leaf"]].answer_correct is False
        assert p["chosen"] == [{"role": "assistant", "content": path_text(t, p["chosen_leaf"])}]
        assert p["rejected"][0]["content"] == path_text(t, p["rejected_leaf"])
    five = preference_pairs(t, random.Random(1), 5)
    assert len(five) == 5 and five == preference_pairs(t, random.Random(1), 5)
    assert five != preference_pairs(t, random.Random(2), 5)


def test_no_pairs_without_both_a_correct_and_a_wrong_leaf():
    t = tree()
    only_correct = Tree("p", [n for n in t if n.answer_correct is not False])
    assert preference_pairs(only_correct, random.Random(0), 5) == []


def test_stepwise_labels_align_with_steps_and_name_their_source():
    t = tree()
    rows = stepwise_rows(t)
    # Leaf 8 has an unjudged step: TRL needs a label for every step, so its path is left out.
    assert sorted(r["leaf_id"] for r in rows) == [2, 3, 4, 5, 6, 7]
    for r in rows:
        path = t.path(r["leaf_id"])[1:]
        assert r["prompt"] == PROBLEM and r["completions"] == [t.nodes[i].step for i in path]
        assert len(r["labels"]) == len(r["completions"])
        assert r["labels"] == [t.nodes[i].verdict == "correct" for i in path]
        assert r["label_source"] == "critic"
    assert {r["leaf_id"]: r["labels"] for r in rows}[3] == [True, False]
    by_mc = stepwise_rows(t, "monte-carlo")
    assert {r["label_source"] for r in by_mc} == {"monte-carlo"} and len(by_mc) == len(rows) + 1
    # A scorer that judged nothing labels only one-step paths whose answer is wrong: the outcome.
    assert {r["leaf_id"]: r["labels"] for r in stepwise_rows(t, "prm-qwen")} == {
        5: [False],
        6: [False],
        7: [False],
    }


def test_the_last_step_of_a_path_whose_answer_does_not_verify_is_labelled_false_whatever_the_source():
    t = tree()
    for n in t:
        n.verdict = "correct" if n.node_id else n.verdict  # a critic that calls every step correct
    assign_tree_values(t)
    for source in ("pruning", "monte-carlo", "tree"):
        rows = stepwise_rows(t, source)
        assert rows, source
        for r in rows:
            if r["answer_correct"] is not None:
                assert r["labels"][-1] is r["answer_correct"], (source, r)


def test_tree_labels_say_whether_a_verified_leaf_lies_beneath_each_step():
    t = tree()
    assign_tree_values(t)
    rows = {r["leaf_id"]: r for r in stepwise_rows(t, "tree")}
    # Step 1 has a correct leaf (2) beneath it, so it is True even on the path to the wrong leaf 3;
    # leaf 8 is not terminal and has nothing beneath it, so its path has no tree label.
    assert rows[3]["labels"] == [True, False] and rows[2]["labels"] == [True, True]
    assert 8 not in rows and {r["label_source"] for r in rows.values()} == {"tree"}
    assert t.nodes[1].tree_value == 0.5 and t.nodes[0].tree_value == 2 / 6


def test_soft_labels_are_each_steps_share_of_verified_leaves_beneath_it():
    t = tree()
    rows = {r["leaf_id"]: r for r in stepwise_rows(t)}
    # Step 1 has one correct and one wrong answered leaf beneath it; each leaf is its own outcome.
    assert rows[2]["soft_labels"] == [0.5, 1.0] and rows[3]["soft_labels"] == [0.5, 0.0]
    assert rows[4]["soft_labels"] == [1.0] and rows[5]["soft_labels"] == [0.0]


def test_step_pairs_compare_siblings_one_leading_to_a_verified_leaf_one_whose_paths_all_fail():
    t = tree()
    pairs = step_pairs(t, random.Random(0), per_tree=100, per_node=100)
    # Root: steps 1 and 4 lead on, 5 and 6/7 (the same text) fail; under step 1: 2 leads on, 3 fails.
    # Step 8 (nothing finished beneath it) is never rejected: it is not known to fail.
    assert sorted((p["parent_id"], p["chosen_id"], p["rejected_id"]) for p in pairs) == [
        (0, 1, 5), (0, 1, 6), (0, 4, 5), (0, 4, 6), (1, 2, 3),
    ]  # fmt: skip
    for p in pairs:
        good, bad = t.nodes[p["chosen_id"]], t.nodes[p["rejected_id"]]
        assert good.parent_id == bad.parent_id == p["parent_id"] and p["depth"] == good.depth == bad.depth
        assert good.reaches_correct is True and bad.reaches_correct is False
        assert p["prompt"] == [{"role": "user", "content": PROBLEM}]
        prefix = path_text(t, p["parent_id"]) if p["parent_id"] else ""
        assert p["prefix"] == prefix
        for side, node in (("chosen", good), ("rejected", bad)):
            # TRL's format: the path so far and the step, one assistant turn; the step's own columns.
            assert p[side] == [
                {"role": "assistant", "content": "\n\n".join(filter(None, [prefix, node.step]))}
            ]
            assert p[f"{side}_step"] == node.step and p[f"{side}_value"] == node.tree_value
            assert p[f"{side}_verdict"] == node.verdict
    assert {p["chosen_value"] for p in pairs} == {0.5, 1.0} and {p["rejected_value"] for p in pairs} == {0.0}


def test_step_pairs_keep_to_their_caps_and_the_seed_draws_the_same_pairs():
    t = tree()
    two = step_pairs(t, random.Random(3), per_tree=100, per_node=1)
    assert sorted(p["parent_id"] for p in two) == [0, 1]
    capped = step_pairs(t, random.Random(3), per_tree=2, per_node=100)
    assert len(capped) == 2 and capped == step_pairs(t, random.Random(3), per_tree=2, per_node=100)
    keys = {
        (p["chosen_step"], p["rejected_step"], p["prefix"]) for p in step_pairs(t, random.Random(4), 100, 100)
    }
    assert len(keys) == 5  # no duplicate pairs


def test_no_step_pairs_in_a_tree_without_a_verified_leaf():
    t = tree()
    for n in t:
        n.answer_correct = False if n.is_terminal else None
    assign_tree_values(t)
    assert step_pairs(t, random.Random(0), 100, 100) == []


def test_revision_trajectories_end_with_the_correct_attempt_after_the_closest_wrong_one():
    t = tree()
    wrong = {i: path_text(t, i) for i in wrong_leaves(t)}
    counts = set()
    for seed in range(40):
        rows = revision_rows(t, random.Random(seed), 4)
        assert [r["correct_leaf"] for r in rows] == t.correct_leaves()
        for r in rows:
            good = r["completion"][0]["content"]
            assert r["completion"] == [{"role": "assistant", "content": path_text(t, r["correct_leaf"])}]
            assert t.nodes[r["correct_leaf"]].answer_correct is True
            assert all(t.nodes[i].answer_correct is False for i in r["wrong_leaves"])
            assert len(set(r["wrong_leaves"])) == r["n_wrong"] <= 4
            assert r["prompt"][0] == {"role": "user", "content": PROBLEM}
            assistants = [m["content"] for m in r["prompt"] if m["role"] == "assistant"]
            assert assistants == [wrong[i] for i in r["wrong_leaves"]]
            assert [m["content"] for m in r["prompt"][2::2]] == [REVISE] * r["n_wrong"]
            if r["n_wrong"]:
                from rapidfuzz.distance import Levenshtein

                closest = min(Levenshtein.distance(good, w) for w in wrong.values())
                assert Levenshtein.distance(good, assistants[-1]) == closest
            counts.add(r["n_wrong"])
        assert rows == revision_rows(t, random.Random(seed), 4)
    assert counts == {0, 1, 2, 3, 4}


def test_o1_journey_rows_put_the_final_answer_after_the_hashes_as_the_release_does():
    row = o1_journey_row({"problem": PROBLEM, "text": "Add.\n\nSo \\boxed{4}.\n", "answer": "4"})
    assert row == {"question": PROBLEM, "longCOT": "Add.\n\nSo \\boxed{4}.\n#### 4", "answer": "4"}
    # How readers of GAIR/o1-journey take a row apart: the thought before "\n####", the answer after "####".
    assert row["longCOT"].split("\n####")[0] == "Add.\n\nSo \\boxed{4}."
    assert row["longCOT"].split("####")[-1].strip() == row["answer"]


def test_push_to_hub_uploads_through_the_repos_api(tmp_path):
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"x")
    repos = LocalRepos(tmp_path / "hub")
    dest = push_to_hub(folder, repos, "me/data", "first")
    (folder / "a.parquet").write_bytes(b"y")
    assert push_to_hub(folder, repos, "me/data", "second") == dest == tmp_path / "hub" / "dataset" / "me/data"
    assert (dest / "a.parquet").read_bytes() == b"y" and (dest / ".last_commit").read_text() == "second\n"


def _polished(pid: str, kind: str, text: str, backtracks: int) -> dict:
    row = dict.fromkeys(POLISHED_SCHEMA.names)
    steps = text.split("\n\n")
    return row | {
        "problem_id": pid,
        "thought_id": f"{pid}/{kind}-0",
        "kind": kind,
        "problem": PROBLEM,
        "reference": "4",
        "text": text,
        "steps": steps,
        "n_steps": len(steps),
        "n_backtracks": backtracks,
        "answer": "4",
        "polish_status": "passthrough",
    }


@pytest.fixture
def small_run(tmp_path):
    """A run folder as the earlier stages leave it: one shard, two problems."""
    run = tmp_path / "outputs" / "small"
    trees = [tree("p"), tree("q")]
    problems = [
        {"problem_id": t.problem_id, "problem": PROBLEM, "answer": "4", "source": "", "meta": "{}"}
        for t in trees
    ]
    write_table(problems, PROBLEM_SCHEMA, run / "problems" / "shard-00000.parquet")
    write_json(run / "problems" / "stats.json", {"rows_read": 2, "problems": 2, "rejected": 0, "wall_s": 0.1})
    write_table(
        nodes_to_table([n for t in trees for n in t]), NODE_SCHEMA, run / "trees" / "shard-00000.parquet"
    )
    polished = [
        _polished(t.problem_id, kind, text, b)
        for t in trees
        for kind, text, b in [
            ("journey", "Add.\n\nWait, no.\n\nSo \\boxed{4}.", 1),
            ("shortcut", "So \\boxed{4}.", 0),
        ]
    ]
    write_table(polished, POLISHED_SCHEMA, run / "polished" / "shard-00000.parquet")
    return run


# A value that is a key by its look, under a key that does not say so.
SK_VALUE = "sk-proj-" + "Q7x" * 8
CARD_SECRETS = ("hunter2", "sk-inline-secret", "hf-token-sentinel", "auth-sentinel-123", SK_VALUE)


def export(run, tmp_path, monkeypatch, **export_section):
    key = "sk-card-sentinel-42"
    monkeypatch.setenv("CARD_TEST_KEY", key)
    cfg = config_mod.load(
        overrides={
            "run": "small",
            "output_root": str(run.parent),
            "engines": {
                "endpoint": {
                    "kind": "openai",
                    "base_url": "https://user:hunter2@example.com/v1",
                    "model": "some/model",
                    "api_key_env": "CARD_TEST_KEY",
                    "extra_body": {
                        "api_key": "sk-inline-secret",
                        "hf_token": "hf-token-sentinel",
                        "headers": {"Authorization": "Bearer auth-sentinel-123", "X-Trace": SK_VALUE},
                        "stop_token_ids": [2],
                    },
                }
            },
            "policy": {"engine": "endpoint"},
            "export": export_section,
        }
    )
    shard = "shard-00000.parquet"
    stats = run_export(
        cfg, [run / "polished" / shard], [run / "trees" / shard], [run / "problems" / shard], run / "sft"
    )
    return stats, key


def test_export_writes_every_format_a_card_and_pushes_to_a_local_folder(small_run, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    stats, key = export(small_run, tmp_path, monkeypatch, push_to_hub=f"file://{hub}", pairs_per_problem=3)
    sft = small_run / "sft"
    assert stats["exports"] == {
        "journey.parquet": 2,
        "shortcut.parquet": 2,
        "preference.parquet": 6,
        "step_preference.parquet": 6,  # per tree: two at the root (per_node 2), one under step 1
        "stepwise.parquet": 12,
        "revision.parquet": 4,
        "o1_journey.parquet": 2,
        "journey_sharegpt.parquet": 2,
        "shortcut_sharegpt.parquet": 2,
    }
    for name, n in stats["exports"].items():
        assert pq.read_table(sft / name).num_rows == n
    assert json.loads((sft / "dataset_info.json").read_text())["small_journey"] == {
        "file_name": "journey_sharegpt.parquet",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations"},
    }
    card = (sft / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert [c["config_name"] for c in front["configs"]] == [
        n.removesuffix(".parquet") for n in stats["exports"]
    ]
    for expected in ("some/model", "https://example.com/v1", "CARD_TEST_KEY", "| preference.parquet | 6 |"):
        assert expected in card
    assert "revision = load_dataset(SFT, 'revision', split=\"train\")" in card
    for secret in (key, *CARD_SECRETS):
        assert secret not in card
    assert stats["thought_lengths"]["journey"]["n"] == 2 and stats["backtracks_per_journey"]["max"] == 1
    pushed = hub / "dataset" / "journey-data"
    assert sorted(p.name for p in pushed.iterdir() if p.name != ".last_commit") == sorted(
        p.name for p in sft.iterdir()
    )
    assert json.loads((small_run / "stats.json").read_text())["exports"] == stats["exports"]


def test_export_writes_only_the_configured_formats(small_run, tmp_path, monkeypatch):
    stats, _ = export(small_run, tmp_path, monkeypatch, formats=["preference", "stepwise"])
    assert list(stats["exports"]) == ["preference.parquet", "stepwise.parquet"]
    assert sorted(p.name for p in (small_run / "sft").iterdir()) == [
        "README.md",
        "preference.parquet",
        "stepwise.parquet",
    ]
    assert stats["journeys"] == 2  # the stats of the run do not depend on the formats written


def _card(sft) -> tuple[dict, dict, str]:
    """The card's front matter, its config section, and its loading code."""
    card = (sft / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    config = yaml.safe_load(card.split("## Config\n\n```yaml\n")[1].split("```")[0])
    return front, config, card.split("## Loading\n\n```python\n")[1].split("```")[0]


def test_the_card_shows_every_setting_and_no_credential(small_run, tmp_path, monkeypatch):
    export(small_run, tmp_path, monkeypatch)
    _, config, _ = _card(small_run / "sft")
    defaults = config_mod.load().raw
    # Token counts and token ids are settings: shown with their values.
    assert config["policy"]["max_step_tokens"] == defaults["policy"]["max_step_tokens"]
    assert config["critic"]["max_tokens"] == defaults["critic"]["max_tokens"]
    assert config["polish"]["max_tokens"] == defaults["polish"]["max_tokens"]
    endpoint = config["engines"]["endpoint"]
    assert endpoint["extra_body"]["stop_token_ids"] == [2] and endpoint["api_key_env"] == "CARD_TEST_KEY"
    # Credentials, by key or by the look of the value, are not.
    assert endpoint["extra_body"]["api_key"] == endpoint["extra_body"]["hf_token"] == "<redacted>"
    assert endpoint["extra_body"]["headers"] == {"Authorization": "<redacted>", "X-Trace": "<redacted>"}
    assert endpoint["base_url"] == "https://example.com/v1"
    card = (small_run / "sft" / "README.md").read_text()
    assert not any(secret in card for secret in CARD_SECRETS)


def test_public_config_redacts_credentials_and_keeps_settings():
    from pipeline.formats.redact import public_config

    secrets = {
        "api_key": "x", "token": "t", "hf_token": "t", "password": "p", "client_secret": "s",
        "Authorization": "a", "apiKey": "k", "basic_auth": ["u", "p"], "note": "hf_" + "b" * 34,
        "url": "https://h/v1?api_key=k1",
    }  # fmt: skip
    settings = {
        "max_tokens": 128, "max_step_tokens": 96, "stop_token_ids": [2], "eos_token": "<|im_end|>",
        "api_key_env": "OPENAI_API_KEY", "keep": 2, "tokens": 3, "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "url": "https://h/v1?region=eu",
    }  # fmt: skip
    shown = public_config({"s": secrets, "k": settings})
    assert shown["k"] == settings
    assert all(v == "<redacted>" for k, v in shown["s"].items() if k != "url")
    assert shown["s"]["url"] == "https://h/v1?api_key=<redacted>"


def test_the_sft_folder_loads_without_a_config_name_and_the_card_code_runs_anywhere(
    small_run, tmp_path, monkeypatch
):
    from datasets import load_dataset

    stats, _ = export(small_run, tmp_path, monkeypatch)
    sft = small_run / "sft"
    front, _, code = _card(sft)
    assert [c["config_name"] for c in front["configs"] if c.get("default")] == ["journey"]
    journeys = load_dataset(str(sft), split="train")
    assert journeys.num_rows == 2 and journeys.column_names[0] == "messages"
    assert journeys[0]["messages"][1]["content"] == "Add.\n\nWait, no.\n\nSo \\boxed{4}."
    # The card's code from a working directory that has nothing to do with the run.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded: dict = {}
    exec(code, loaded)
    for name, rows in stats["exports"].items():
        assert loaded[name.removesuffix(".parquet")].num_rows == rows
    assert loaded["o1_journey"][0]["longCOT"].endswith("\n#### 4")


def test_export_defaults_write_all_formats():
    assert config_mod.load().export.formats == list(FORMATS)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"formats": ["sft", "csv"]}, "export.formats.1"),
        ({"pairs_per_problem": 0}, "export.pairs_per_problem"),
        ({"push_to_hub": "not a repo"}, "export.push_to_hub"),
        ({"step_labels": "monte-carlo"}, "export.step_labels"),
    ],
)
def test_bad_export_config_names_the_field(section, field):
    with pytest.raises(config_mod.ConfigError, match=field.replace(".", r"\.")):
        config_mod.load(overrides={"export": section})


@pytest.fixture
def barren_run(small_run):
    """The small run where no tree reached a verified leaf: every leaf wrong or cut at max depth."""
    trees_path = small_run / "trees" / "shard-00000.parquet"
    nodes = pq.read_table(trees_path).to_pylist()
    for n in nodes:
        if n["answer_correct"]:
            n.update(answer="7", answer_correct=False)
    nodes.append(
        dict(nodes[-1], node_id=9, parent_id=8, depth=4, step="More.", answer=None, is_terminal=True)
    )
    write_table(nodes, NODE_SCHEMA, trees_path)
    write_table([], POLISHED_SCHEMA, small_run / "polished" / "shard-00000.parquet")
    return small_run


def test_a_run_without_journeys_says_why_and_offers_no_empty_file(barren_run, tmp_path, monkeypatch):
    stats, _ = export(barren_run, tmp_path, monkeypatch)
    report = stats["yield_report"]
    assert report["problems"] == 2 and report["problems_with_journey"] == 0 and report["low"]
    assert "0 of 2 problems gave a journey (0%)" in report["message"]
    causes = {c["cause"]: c for c in report["causes"]}
    wrong = causes["answered leaves whose answer is wrong"]
    assert (wrong["count"], wrong["of"], wrong["setting"]) == (12, 12, "policy.engine")
    cut = causes["leaves cut at max depth without a final answer"]
    assert (cut["count"], cut["setting"]) == (1, "policy.max_depth") and "policy.max_depth (now 4)" in cut[
        "advice"
    ]
    # With no verified leaf there are no journeys, pairs or revisions; stepwise paths still exist.
    assert "stepwise.parquet" not in report["empty_files"]
    assert {"journey.parquet", "preference.parquet", "revision.parquet"} <= set(report["empty_files"])
    card = (barren_run / "sft" / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    offered = {c["config_name"] for c in front["configs"]}
    assert offered == {"stepwise"} and 'data_files="journey.parquet"' not in card
    assert "Empty, so not offered above" in card and "`journey.parquet`" in card
    assert "policy.max_depth" in card and report["message"] in card


def test_min_yield_fails_the_export_before_any_training_file_is_written(barren_run, tmp_path, monkeypatch):
    from pipeline.yield_report import YieldError

    with pytest.raises(YieldError, match=r"yield 0% is under export.min_yield \(50%\)") as err:
        export(barren_run, tmp_path, monkeypatch, min_yield=0.5)
    assert "policy.max_depth" in str(err.value)
    assert not (barren_run / "sft").exists() and not (barren_run / "stats.json").exists()


def test_the_export_command_exits_non_zero_with_the_yield_message(barren_run, tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "min.yaml"
    cfg.write_text(
        yaml.safe_dump({"run": "small", "output_root": str(barren_run.parent), "export": {"min_yield": 0.9}})
    )
    shard = "shard-00000.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "export", "--config", str(cfg),
         "--polished", str(barren_run / "polished" / shard), "--trees", str(barren_run / "trees" / shard),
         "--problems", str(barren_run / "problems" / shard), "--out-dir", str(barren_run / "sft")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "error: yield 0% is under export.min_yield (90%)" in proc.stderr and "Traceback" not in proc.stderr
    assert "answered leaves whose answer is wrong -> policy.engine" in proc.stderr
