"""The report stage: a static site per run; model text is always escaped; the tree DOM carries the
walk and shortcut; the index stays small because per-problem data lives in per-problem pages."""

from __future__ import annotations

import json
import re
import time

import pytest

from pipeline.report import compare_runs, run_report
from pipeline.report.html import safe_name, script_json
from pipeline.report.keywords import keyword_counts, profile, word_count
from tests.report_runs import (
    EVIL,
    EVIL_ID,
    EVIL_REFERENCE,
    NEW_STATS,
    PC_TEXT_1,
    PC_TEXT_2,
    STATS_A,
    STATS_B,
    write_judged_run,
    write_methods_run,
    write_run,
)


@pytest.fixture
def site(tmp_path):
    run = tmp_path / "run"
    write_run(
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
    write_run(tmp_path / "run", problems, shards=4)
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


@pytest.fixture
def judged(tmp_path):
    write_judged_run(tmp_path / "run")
    run_report(tmp_path / "run", tmp_path / "report")
    index = (tmp_path / "report" / "index.html").read_text()
    return index, (tmp_path / "report" / "problems" / safe_name("half")).read_text()


def _node(html: str, node_id: int) -> str:
    """A node's element, up to where its children begin."""
    return re.search(rf'data-node-id="{node_id}".*?</span>(?:</summary>|</li>)', html, flags=re.S).group(0)


def _marks(html: str, node_id: int) -> dict[str, str]:
    """{"verdict": text, "check": text} of a node's marks, as a reader sees them."""
    found = re.findall(r'<span class="mark (\w+)[^"]*"[^>]*>(.*?)</span>', _node(html, node_id))
    return {kind: text for kind, text in found}


def test_verdict_and_answer_check_are_two_marks(judged):
    _, page = judged
    # Node 2: the critic judged the step correct, math-verify found its answer wrong.
    marks = _marks(page, 2)
    assert marks["verdict"] == "critic: correct"
    assert marks["check"] == "answer &lt;b&gt;7&lt;/b&gt; \u2717 wrong \u00b7 math-verify"
    assert 'data-verdict="correct"' in _node(page, 2) and 'data-check="wrong"' in _node(page, 2)
    assert _marks(page, 3)["check"] == "answer 1/2 \u2713 verified \u00b7 math-verify"
    assert "check" not in _marks(page, 1) and _marks(page, 0) == {}  # inner nodes and the root
    assert _marks(page, 4)["verdict"] == "not judged"  # no scorer saw it
    legend = re.search(r'<p class="legend muted">(.*?)</p>', page).group(1)
    assert "the pruning scorer's verdict on the step" in legend and "checked against the reference" in legend


def test_leaves_without_an_answer_say_why(judged):
    _, page = judged
    assert _marks(page, 5)["check"] == "cut at max depth"  # depth 2 = policy.max_depth
    assert _marks(page, 6)["check"] == "no final answer"  # ended its turn at depth 1
    assert _marks(page, 5)["limit"] == "cut at the step token limit"  # 50 tokens = max_step_tokens


def test_node_details_carry_tree_values_and_the_checker(judged):
    _, page = judged
    data = json.loads(re.search(r'id="node-data">(.*?)</script>', page).group(1))
    assert data["1"]["tree_value"] == 0.5 and data["1"]["reaches_correct"] is True
    assert data["2"]["answer_checker"] == "math-verify" and data["2"]["reaches_correct"] is False
    assert data["5"]["check"] == "cut at max depth"
    assert "<b>" not in re.search(r'id="node-data">(.*?)</script>', page).group(1)


def test_problem_table_shows_the_reference_answer(judged):
    index, page = judged
    data = json.loads(re.search(r'id="index-data">(.*?)</script>', index).group(1))
    row = dict(zip(data["columns"], data["rows"][0]))
    assert row["answer"] == EVIL_REFERENCE
    assert "reference answer" in index and "</script><b>ref" not in index
    assert "reference answer <code>\\frac{1}{2} &lt;/script&gt;&lt;b&gt;ref&lt;/b&gt;</code>" in page


def _cards(index: str) -> dict[str, str]:
    return {k: v for v, k in re.findall(r'<div class="card"><b>(.*?)</b>(.*?)</div>', index)}


def test_node_counts_and_wall_times_are_stats_json_s(judged):
    index, page = judged
    cards = _cards(index)
    assert cards["generated nodes (root excluded)"] == str(NEW_STATS["nodes_generated"]) == "6"
    assert cards["kept / pruned nodes"] == "5 / 1"
    wall = NEW_STATS["wall_s"]
    assert cards["wall time, stages summed (each over its shards)"] == f"{sum(wall.values()):.1f} s"
    times = re.search(r'<p id="stage-times"[^>]*>(.*?)</p>', index).group(1)
    assert all(f"{stage} {s:g} s" in times for stage, s in wall.items()), times
    data = json.loads(re.search(r'id="index-data">(.*?)</script>', index).group(1))
    assert dict(zip(data["columns"], data["rows"][0]))["nodes"] == 6  # the problem table counts alike
    assert "6 generated nodes (root excluded)" in page


def test_yield_box_gives_causes_and_the_settings_to_change(judged):
    index, _ = judged
    box = re.search(r'<section id="yield" class="low">(.*?)</section>', index).group(1)
    assert "low yield: </span>3 of 16 problems gave a journey (19%)." in box
    rows = re.findall(r"<tr>(.*?)</tr>", box)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows[1:]]
    assert cells[0] == ["leaves cut at max depth without a final answer", "226 of 298 terminal nodes",
                        "policy.max_depth", "raise policy.max_depth (now 4)"]  # fmt: skip
    assert cells[1][2] == "pruning.keep" and cells[1][3] == "raise pruning.keep &lt;or&gt; policy.width"
    assert index.index('id="yield"') < index.index('id="summary"')  # the first thing on the page


def test_scorer_agreement_and_polish_passes_are_shown(judged):
    index, _ = judged
    agreement = re.search(r'<table id="agreement">(.*?)</table>', index).group(1)
    assert "pruning scorer vs tree values" in index
    assert '<td>scorer: correct, no verified leaf below</td><td class="num">8</td>' in agreement
    assert "<td>share disagreeing</td><td>25.0%</td>" in agreement
    passes = re.findall(r"<td>attempt (\d+)</td><td class=\"num\">(\d+)</td>", index)
    assert passes == [("1", "5"), ("2", "3"), ("10", "1")]


def test_old_stats_json_shows_no_yield_box(site):
    out, _ = site
    index = (out / "index.html").read_text()
    assert 'id="yield"' not in index and 'id="agreement"' not in index and "polish passes" not in index
    # Without stats.json's node counts the report counts the tables the same way: root excluded.
    assert _cards(index)["generated nodes (root excluded)"] == "12"  # 3 trees of 4 generated nodes


def test_without_config_yaml_the_deepest_level_is_taken_as_max_depth(tmp_path):
    write_judged_run(tmp_path / "run")
    (tmp_path / "run" / "config.yaml").unlink()
    run_report(tmp_path / "run", tmp_path / "report")
    page = (tmp_path / "report" / "problems" / safe_name("half")).read_text()
    assert _marks(page, 5) == {"verdict": "critic: incorrect", "check": "cut at max depth"}
    assert _marks(page, 6)["check"] == "no final answer"


@pytest.fixture
def two_runs(tmp_path):
    write_methods_run(tmp_path / "a", ["p1", "p2", "p3"], STATS_A)
    write_methods_run(tmp_path / "b", ["p2", "p4", "p3"], STATS_B, scale=2)
    return tmp_path / "a", tmp_path / "b"


def _table_rows(html: str, table_id: str) -> list[list[str]]:
    table = re.search(rf"<table id=.{table_id}.>(.*?)</table>", html, flags=re.S).group(1)
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table)]


def test_method_table_figures(two_runs, tmp_path):
    run_report(two_runs[0], tmp_path / "report")
    index = (tmp_path / "report" / "index.html").read_text()
    head, *rows = _table_rows(index, "method-table")
    table = {r[0]: dict(zip(head, r)) for r in rows}
    assert list(table) == ["tree", "propose-critique", "outcome"]
    tree, pc, outcome = table["tree"], table["propose-critique"], table["outcome"]
    # Yield of attempted problems; p1 and p2 are the problems every method attempted.
    assert tree["yield"] == "2 (66.7%)" and pc["yield"] == "2 (66.7%)" and outcome["yield"] == "1 (50.0%)"
    assert outcome["attempted"] == "2" and tree["attempted"] == "3"
    shared = "yield on the 2 problems all attempted"
    assert (tree[shared], pc[shared], outcome[shared]) == ("100.0%", "100.0%", "50.0%")
    # propose-critique: its two verified thoughts (p3's failed one counts in no mean).
    assert pc["accepted / thoughts"] == "2 / 3"
    assert pc["length: chars / steps (mean)"] == f"{(len(PC_TEXT_1) + len(PC_TEXT_2)) / 2:g} / 4"
    assert pc["backtracks / thought"] == "1.5" and pc["reflections / thought"] == "2.5"
    assert pc["wait /1000 words"] == "150" and pc["therefore /1000 words"] == "50"
    assert pc["engine tokens / accepted thought"] == "315"  # (100 + 200 + 330) / 2
    assert tree["engine tokens / accepted thought"] == "300"  # stats.json's 500 + 100 over 2 journeys
    assert pc["polish guard pass rate"] == "100.0%" and tree["polish guard pass rate"] == "50.0%"
    # Sampled solutions: the share correct and the pairs exported instead of a length.
    assert outcome["length: chars / steps (mean)"] == "25.0% correct \u00b7 1 pairs"
    assert outcome["engine tokens / accepted thought"] == "40" and outcome["backtracks / thought"] == "\u2013"
    note = re.search(r"<p class='muted' id='tree-tokens-note'>(.*?)</p>", index).group(1)
    assert "policy, scorer and annotator tokens of the trees stage" in note  # how tree tokens count


def test_single_method_run_has_one_row(site):
    out, _ = site
    index = (out / "index.html").read_text()
    head, *rows = _table_rows(index, "method-table")
    assert [r[0] for r in rows] == ["tree"] and "<h2>Method</h2>" in index
    assert not any(h.startswith("yield on the") for h in head)


def test_problem_page_shows_each_methods_thought(two_runs, tmp_path):
    run_report(two_runs[0], tmp_path / "report")
    page = (tmp_path / "report" / "problems" / safe_name("p1")).read_text()
    sections = re.findall(r'<section class="method" id="method-([\w-]+)"', page)
    assert sections == ["tree", "propose-critique", "outcome"]
    pc = page[page.index('id="method-propose-critique"') : page.index('id="method-outcome"')]
    # Raw and polished differ: both, side by side; the walk on the tree stays the tree method's.
    assert f"<pre class='raw'>{PC_TEXT_1}</pre>" in pc and f"<pre>Polished {PC_TEXT_1}</pre>" in pc
    assert "1 of 2 sampled solutions verify." in page
    walk = json.loads(re.search(r'id="walk-data">(.*?)</script>', page).group(1))
    assert [w["thought_id"] for w in walk] == ["p1/tree/journey-0"]
    # p2's propose-critique thought: the polisher returned it unchanged, so it shows once.
    p2 = (tmp_path / "report" / "problems" / safe_name("p2")).read_text()
    assert "(polisher output identical)" in p2 and p2.count(PC_TEXT_2) == 1


def test_script_in_a_methods_thought_is_text(two_runs, tmp_path):
    run_report(two_runs[0], tmp_path / "report")
    page = (tmp_path / "report" / "problems" / safe_name("p3")).read_text()
    assert "<script>alert(9)" not in page
    assert "Step one. &lt;script&gt;alert(9)&lt;/script&gt; Wait, I give up." in page
    assert "\u2717 not verified" in page


def test_compare_page_puts_both_runs_side_by_side(two_runs, tmp_path):
    out = tmp_path / "compare"
    stats = compare_runs(*two_runs, out)
    index = (out / "index.html").read_text()
    assert "Runs compared: A alpha vs B beta" in index
    head = {r[0]: r[1:] for r in _table_rows(index, "headline")}
    assert head["generated nodes"] == ["12", "20", "+8"]
    assert head["tokens: total"] == ["600", "900", "+300"]
    assert head["polish guard pass rate"] == ["50.0%", "75.0%", "+25.0 pp"]
    assert head["wall time: trees (s)"] == ["10", "12.5", "+2.5"]
    assert head["yield (problems with a journey)"] == ["66.7%", "66.7%", "+0.0 pp"]
    methods = {(r[0], r[1]): r[2:] for r in _table_rows(index, "method-compare")[1:]}
    # Run B's engine methods spent twice the tokens: (200 + 400 + 660) / 2 accepted thoughts.
    assert methods["propose-critique", "engine tokens / accepted thought"] == ["315", "630", "+315"]
    assert methods["tree", "engine tokens / accepted thought"] == ["300", "450", "+150"]
    assert methods["outcome", "share correct"] == ["25.0%", "25.0%", "+0.0 pp"]
    # Shared problems p2 and p3, each with a page holding both runs' thoughts, escaped.
    assert stats["shared_problems"] == 2 and stats["pair_pages"] == 2
    assert re.findall(r"<tr data-problem-id='(\w+)'>", index) == ["p2", "p3"]
    pair = (out / "problems" / safe_name("p3")).read_text()
    assert pair.count("Step one. &lt;script&gt;alert(9)") == 2 and "<script>alert(9)" not in pair
    assert "A: alpha" in pair and "B: beta" in pair


def test_compare_with_a_missing_run_or_file_is_one_line_error(two_runs, tmp_path, capsys):
    from pipeline.cli import main

    missing = tmp_path / "nope"
    args = ["report", "--compare", str(two_runs[0]), str(missing), "--out-dir", str(tmp_path / "c")]
    assert main(args) == 2
    assert capsys.readouterr().err == f"error: run directory {missing} not found\n"
    (two_runs[1] / "stats.json").unlink()
    assert main(["report", "--compare", *map(str, two_runs), "--out-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {two_runs[1] / 'stats.json'} not found") and err.count("\n") == 1
    assert main(["report", "--run-dir", str(missing), "--out-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == f"error: run directory {missing} not found\n"


def test_a_run_from_before_the_methods_reads_as_the_tree_walk(tmp_path):
    import pyarrow.parquet as pq

    write_run(tmp_path / "run", [("plain", "What is 1 + 1?")], shards=1)
    shard = tmp_path / "run" / "polished" / "shard-00000.parquet"
    old = pq.read_table(shard).drop_columns(["method", "n_reflections", "correct", "engine_tokens"])
    pq.write_table(old, shard)
    run_report(tmp_path / "run", tmp_path / "report")
    head, *rows = _table_rows((tmp_path / "report" / "index.html").read_text(), "method-table")
    tree = dict(zip(head, rows[0]))
    assert len(rows) == 1 and tree["method"] == "tree" and tree["yield"] == "1 (100.0%)"
    assert tree["reflections / thought"] == "1"  # one per backtrack, as the tree walk writes them


def test_compare_limits_the_pair_pages_with_a_note(two_runs, tmp_path, monkeypatch):
    import pipeline.report.compare as compare

    monkeypatch.setattr(compare, "PAIR_PAGES", 1)
    stats = compare_runs(*two_runs, tmp_path / "compare")
    index = (tmp_path / "compare" / "index.html").read_text()
    assert stats["pair_pages"] == 1 and len(list((tmp_path / "compare" / "problems").iterdir())) == 1
    note = re.search(r"<p class='muted' id='pair-limit'>(.*?)</p>", index).group(1)
    assert note == "pages for the first 1 of 2 shared problems (in run A's order)"
