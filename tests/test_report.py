"""The report stage: a static site per run; model text is always escaped; the tree DOM carries the
walk and shortcut; the index stays small because per-problem data lives in per-problem pages."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict

import pytest

from pipeline.report import run_report
from pipeline.report.html import safe_name, script_json
from pipeline.report.keywords import keyword_counts, profile, word_count
from pipeline.tables import NODE_SCHEMA, POLISHED_SCHEMA, PROBLEM_SCHEMA, write_table
from trees.model import Node

EVIL = "Is <script>alert(1)</script> bigger than </script><!-- & 2?"
EVIL_ID = 'evil/../"id" <b>'


def _nodes(pid: str, problem: str) -> list[Node]:
    return [
        Node(pid, 0, -1, 0, problem),
        Node(pid, 1, 0, 1, "Try 1 + 1 = 3 </script><script>alert(2)</script>", verdict="incorrect",
             score=0.1, rationale="1 + 1 is 2, not 3 <img src=x onerror=alert(3)>", scorer="judge",
             kept=False, prune_reason="judged incorrect"),
        Node(pid, 2, 0, 1, "1 + 1 = 2", verdict="correct", score=0.9, rationale="right step", scorer="judge"),
        Node(pid, 3, 2, 2, "So \\boxed{2}", is_terminal=True, answer="2", answer_correct=True,
             verdict="correct", score=1.0, rationale="final answer matches"),
        Node(pid, 4, 2, 2, "So \\boxed{5}", is_terminal=True, answer="5", answer_correct=False,
             verdict="incorrect", score=0.0, rationale="wrong final"),
    ]  # fmt: skip


def _thought(pid: str, problem: str, kind: str, visits: list[int], text: str) -> dict:
    return {
        "problem_id": pid,
        "thought_id": f"{pid}/{kind}-0",
        "kind": kind,
        "problem": problem,
        "reference": "2",
        "text": text,
        "steps": ["1 + 1 = 2", "So \\boxed{2}"],
        "visits": visits,
        "shortcut": [0, 2, 3],
        "n_steps": 2,
        "n_backtracks": 1 if kind == "journey" else 0,
        "answer": "2",
        "seed": 0,
        "raw_text": text,
        "polished_text": "Polished </script><script>alert(4)</script>" if kind == "journey" else "",
        "polish_status": "fallback" if kind == "journey" else "passthrough",
        "polish_failed": ["answer: <missing>"] if kind == "journey" else [],
        "polish_tokens": 10,
        "polish_model": "m",
    }


def _write_run(run, problems: list[tuple[str, str]], journeys: set[str] | None = None, shards: int = 2):
    """problems: (problem_id, text); journeys: ids that get a journey (default: all)."""
    journeys = {pid for pid, _ in problems} if journeys is None else journeys
    for s in range(shards):
        part = problems[s::shards]
        rows = [{"problem_id": p, "problem": t, "answer": "2", "source": "t", "meta": "{}"} for p, t in part]
        write_table(rows, PROBLEM_SCHEMA, run / "problems" / f"shard-{s:05d}.parquet")
        nodes = [asdict(n) for p, t in part for n in _nodes(p, t)]
        write_table(nodes, NODE_SCHEMA, run / "trees" / f"shard-{s:05d}.parquet")
        thoughts = [
            _thought(p, t, kind, visits, text)
            for p, t in part
            if p in journeys
            for kind, visits, text in [
                (
                    "journey",
                    [0, 1, 0, 2, 3],
                    "Try 3. Wait, that is wrong. Let me go back. Therefore \\boxed{2}.",
                ),
                ("shortcut", [0, 2, 3], "1 + 1 = 2. So \\boxed{2}."),
            ]
        ]
        write_table(thoughts, POLISHED_SCHEMA, run / "polished" / f"shard-{s:05d}.parquet")
    (run / "stats.json").write_text(
        json.dumps({"run": "tiny", "wall_s": {"trees": 1.5}, "tokens": {"policy": 7}})
    )


@pytest.fixture
def site(tmp_path):
    run = tmp_path / "run"
    _write_run(
        run,
        [(EVIL_ID, EVIL), ("plain", "What is 1 + 1?"), ("nojourney", "What is 1 + 1?")],
        {EVIL_ID, "plain"},
    )
    out = tmp_path / "report"
    stats = run_report(run, out)
    return out, stats


def _pages(out):
    return [out / "index.html", *sorted((out / "problems").glob("*.html"))]


def test_files_are_written_with_safe_names(site):
    out, stats = site
    assert (out / "index.html").is_file()
    names = sorted(p.name for p in (out / "problems").glob("*.html"))
    assert len(names) == 3 and stats["problem_pages"] == 3 and stats["pages_written"] == 4
    assert safe_name(EVIL_ID) in names
    assert all(re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{10}\.html", n) for n in names)
    assert safe_name("A b") != safe_name("a-b")  # the hash keeps ids apart that slug alike
    assert stats["wall_s"] >= 0


def test_model_text_is_escaped_everywhere(site):
    out, _ = site
    for path in _pages(out):
        text = path.read_text()
        # The only script elements are ours: no model text opened one.
        assert "<script>alert" not in text and "<img" not in text, path.name
        assert "</script><" not in text.replace("</script>\n<script", ""), path.name
        for script in re.findall(r"<script[^>]*>(.*?)</script>", text, flags=re.S):
            assert "<" not in script or "alert" not in script
    problem = (out / "problems" / safe_name(EVIL_ID)).read_text()
    assert "Is &lt;script&gt;alert(1)&lt;/script&gt; bigger than &lt;/script&gt;&lt;!-- &amp; 2?" in problem
    index = (out / "index.html").read_text()
    assert "\\u003cscript\\u003ealert(1)" in index  # in the embedded JSON index


def test_script_json_cannot_break_out():
    text = script_json({"a": "</script><!-- & x"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & x"}


def _node_elements(html: str) -> list[str]:
    return re.findall(r"<span class=\"node [^\"]*\"[^>]*>", html)


def test_tree_page_has_one_element_per_node_with_walk_and_shortcut(site):
    out, _ = site
    html = (out / "problems" / safe_name("plain")).read_text()
    elements = _node_elements(html)
    ids = [int(re.search(r'data-node-id="(\d+)"', e).group(1)) for e in elements]
    assert sorted(ids) == [0, 1, 2, 3, 4]
    assert len(re.findall(r'data-node-id="\d+"', html)) == 5
    by_id = dict(zip(ids, elements))
    walks = {i: re.search(r'data-walk="([\d,]*)"', e) for i, e in by_id.items()}
    # visits [0, 1, 0, 2, 3]: node 0 at positions 0 and 2, node 1 at 1, node 2 at 3, node 3 at 4.
    assert {i: m.group(1) for i, m in walks.items() if m} == {0: "0,2", 1: "1", 2: "3", 3: "4"}
    assert {i for i, e in by_id.items() if " shortcut" in e.split('"')[1]} == {0, 2, 3}
    assert "pruned" in by_id[1] and "v-incorrect" in by_id[1] and "v-correct" in by_id[3]
    assert "pruned: judged incorrect" in html
    # The rationale is in the embedded node data, shown in the single .rationale element on click.
    data = json.loads(re.search(r'id="node-data">(.*?)</script>', html).group(1))
    assert data["2"]["rationale"] == "right step"
    assert len(re.findall(r'class="rationale"', html)) == 1
    # raw and polished thought side by side
    assert "<pre class='raw'>Try 3. Wait" in html and "Polished &lt;/script&gt;" in html


def test_problem_without_journey_still_gets_a_page(site):
    out, _ = site
    html = (out / "problems" / safe_name("nojourney")).read_text()
    assert not re.search(r'data-walk="\d', html) and len(_node_elements(html)) == 5
    index = json.loads(
        re.search(r'id="index-data">(.*?)</script>', (out / "index.html").read_text()).group(1)
    )
    journeys = {r[0]: r[index["columns"].index("journeys")] for r in index["rows"]}
    assert journeys == {EVIL_ID: 1, "plain": 1, "nojourney": 0}


def test_keyword_profile_counts():
    text = "Wait, let me think. Let  me check: wait... Alternatively, therefore; awaiting letme waiting."
    assert keyword_counts(text) == {"wait": 2, "alternatively": 1, "therefore": 1, "let me": 2}
    assert word_count("Let's wait, 2 + 2 = 4.") == 5
    p = profile(["wait " * 10 + "x " * 90, "therefore " + "y " * 99])
    assert p["words"] == 200 and p["counts"]["wait"] == 10
    assert p["per_1000"] == {"wait": 50.0, "alternatively": 0.0, "therefore": 5.0, "let me": 0.0}
    assert profile([])["per_1000"]["wait"] is None


def test_index_of_2000_problems_is_quick_and_small(tmp_path):
    n = 2000
    problems = [(f"p{i:05d}", f"Problem {i}: what is {i} + {i}? " + "pad " * 50) for i in range(n)]
    _write_run(tmp_path / "run", problems, shards=4)
    start = time.perf_counter()
    stats = run_report(tmp_path / "run", tmp_path / "report")
    elapsed = time.perf_counter() - start
    assert stats["problem_pages"] == n
    # One index row is the id, the file name (~20 chars), a problem snippet cut to 100 chars, 7 counts
    # and 4 keyword counts: under 250 bytes of JSON. The fixed part (summary, charts, CSS, JS) is
    # under 40 KB. Trees and thoughts never enter the index, so it grows by rows only.
    size = (tmp_path / "report" / "index.html").stat().st_size
    assert size < 40_000 + 250 * n, size
    assert elapsed < 30, elapsed  # about 2-4 s on a laptop-class CPU


def test_problem_page_shows_what_the_polish_changed(site):
    out, _ = site
    text = (out / "problems" / safe_name("plain")).read_text()
    assert "what the polish changed" in text
    # The raw journey's words are deleted, the polisher's (escaped) words inserted.
    assert "<del>Try</del><ins>Polished</ins>" in text
    assert "&lt;script&gt;alert(4)&lt;/script&gt;</ins>" in text and "<script>alert(4)" not in text
