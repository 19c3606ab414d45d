"""`report --compare RUN_A RUN_B`: one static page with two runs' stats.json figures and per-method
tables side by side with the difference, and a page per shared problem with each run's thoughts
side by side, method by method. All model text is escaped."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.io.tables import write_text
from pipeline.report.build import Run, RunFilesError, load_run
from pipeline.report.html import clip, esc, page, safe_name
from pipeline.report.keywords import KEYWORDS
from pipeline.report.methods import DASH, accepted, fmt, method_of, method_order
from pipeline.report.thought_html import CSS as THOUGHT_CSS
from pipeline.report.thought_html import thought_html

# Pages for the first shared problems only: each is a few tens of KB, and a reader compares a sample.
PAIR_PAGES = 200

CSS = """
td.diff{color:#555}.problem{border:1px solid #ddd;border-radius:6px;padding:.5em;background:#fafbfc}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}.pair>div{border:1px solid #ddd;border-radius:6px;padding:.5em;min-width:0}
"""


def require_run(run_dir: Path) -> None:
    """The files --compare reads: the run directory, its stats.json and a thoughts table."""
    if not run_dir.is_dir():
        raise RunFilesError(f"run directory {run_dir} not found")
    stats = run_dir / "stats.json"
    if not stats.is_file():
        raise RunFilesError(f"{stats} not found: the export stage writes it at the end of a run")
    if not any(run_dir.glob("polished/shard-*.parquet")) and not any(
        run_dir.glob("thoughts/shard-*.parquet")
    ):
        raise RunFilesError(f"{run_dir / 'thoughts' / 'shard-*.parquet'} not found: the run has no thoughts")


def _yield(stats: dict) -> float | None:
    report = stats.get("yield_report") or {}
    if report.get("share") is not None:
        return report["share"]
    valid = stats.get("problems_valid")
    return (
        round(stats["problems_with_journey"] / valid, 4)
        if valid and "problems_with_journey" in stats
        else None
    )


def headline(stats: dict) -> list[tuple[str, object, str]]:
    """(label, value, kind) for stats.json's headline figures; kind "pct" for a share."""
    backtracks = stats.get("backtracks_per_journey") or {}
    tokens = stats.get("tokens") or {}
    wall = {k: v for k, v in (stats.get("wall_s") or {}).items() if v is not None}
    rows = [
        ("yield (problems with a journey)", _yield(stats), "pct"),
        ("problems", stats.get("problems_valid"), "num"),
        ("problems with a journey", stats.get("problems_with_journey"), "num"),
        ("generated nodes", stats.get("nodes_generated"), "num"),
        ("correct leaves", stats.get("correct_leaves"), "num"),
        ("journeys", stats.get("journeys"), "num"),
        ("journeys with a backtrack", stats.get("journeys_with_backtrack"), "num"),
        ("backtracks per journey (mean)", backtracks.get("mean"), "num"),
        *((f"tokens: {k}", v, "num") for k, v in tokens.items()),
        ("tokens: total", sum(v or 0 for v in tokens.values()) if tokens else None, "num"),
        ("polish guard pass rate", stats.get("polish_guard_pass_rate"), "pct"),
        *((f"wall time: {k} (s)", v, "num") for k, v in wall.items()),
        ("wall time: stages summed (s)", round(sum(wall.values()), 3) if wall else None, "num"),
    ]
    return rows


def method_rows(figures: list[dict]) -> dict[tuple[str, str], tuple[object, str]]:
    """(method, figure label) -> (value, kind), for the compare table."""
    out: dict[tuple[str, str], tuple[object, str]] = {}
    for f in figures:
        m = f["method"]
        out[m, "attempted"] = (f["attempted"], "num")
        out[m, "yield"] = (f["yield"], "pct")
        out[m, "accepted thoughts"] = (f["accepted"], "num")
        if f["long_thoughts"]:
            out[m, "length: chars (mean)"] = (f["chars_mean"], "num")
            out[m, "length: steps (mean)"] = (f["steps_mean"], "num")
            out[m, "backtracks / thought"] = (f["backtracks_mean"], "num")
            out[m, "reflections / thought"] = (f["reflections_mean"], "num")
        else:
            out[m, "share correct"] = (f["share_correct"], "pct")
            out[m, "preference pairs"] = (f.get("pairs"), "num")
        for k in KEYWORDS:
            out[m, f"{k} /1000 words"] = (f["keywords"][k], "num")
        out[m, "engine tokens / accepted thought"] = (f["tokens_per_accepted"], "num")
        out[m, "polish guard pass rate"] = (f["polish_pass_rate"], "pct")
    return out


def difference(a, b, kind: str) -> str:
    """b - a as text: percentage points for shares, a dash when either side is missing."""
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return DASH
    d = b - a
    if kind == "pct":
        return f"{d * 100:+.1f} pp"
    return f"{d:+,}" if isinstance(d, int) else f"{d:+,.2f}".rstrip("0").rstrip(".")


def _row(label: str, a, b, kind: str, head: str = "") -> str:
    return (
        f"<tr>{head}<th>{esc(label)}</th><td class='num a'>{fmt(a, kind)}</td>"
        f"<td class='num b'>{fmt(b, kind)}</td><td class='num diff'>{esc(difference(a, b, kind))}</td></tr>"
    )


def _headline_table(a: Run, b: Run, names: tuple[str, str]) -> str:
    ha, hb = headline(a.stats), headline(b.stats)
    labels = list(dict.fromkeys([r[0] for r in ha] + [r[0] for r in hb]))
    va, vb = {r[0]: r[1:] for r in ha}, {r[0]: r[1:] for r in hb}
    rows = "".join(
        _row(k, va.get(k, (None,))[0], vb.get(k, (None,))[0], (va.get(k) or vb.get(k))[1]) for k in labels
    )
    return (
        f"<table id='headline'><tr><th>figure</th><th>A: {esc(names[0])}</th><th>B: {esc(names[1])}</th>"
        f"<th>B \u2212 A</th></tr>{rows}</table>"
    )


def _method_table(a: Run, b: Run, names: tuple[str, str]) -> str:
    ma, mb = method_rows(a.methods()), method_rows(b.methods())
    keys = list(dict.fromkeys([*ma, *mb]))
    rows = "".join(
        _row(label, ma.get((m, label), (None,))[0], mb.get((m, label), (None,))[0],
             (ma.get((m, label)) or mb.get((m, label)))[1],
             head=f"<td data-method='{esc(m)}'>{esc(m)}</td>")
        for m, label in keys
    )  # fmt: skip
    return (
        f"<table id='method-compare'><tr><th>method</th><th>figure</th><th>A: {esc(names[0])}</th>"
        f"<th>B: {esc(names[1])}</th><th>B \u2212 A</th></tr>{rows}</table>"
    )


def _by_problem(run: Run) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t in run.thoughts:
        out.setdefault(t["problem_id"], []).append(t)
    return out


def _ids(run: Run) -> list[str]:
    return list(dict.fromkeys([*(p["problem_id"] for p in run.problems), *run.trees, *_by_problem(run)]))


def _pick(rows: list[dict]) -> list[dict]:
    """A method's thoughts to show for one problem: its first accepted journey, else its first journey;
    for sampled solutions, the first that verifies and the first that does not."""
    journeys = [t for t in rows if t["kind"] == "journey"]
    if journeys:
        return [next((t for t in journeys if accepted(t)), journeys[0])]
    solutions = [t for t in rows if t["kind"] == "solution"]
    good = [t for t in solutions if t.get("correct")]
    bad = [t for t in solutions if not t.get("correct")]
    return good[:1] + bad[:1]


def _side(rows: list[dict]) -> str:
    shown = _pick(rows)
    return "".join(thought_html(t) for t in shown) or "<p class='muted'>no thought from this method</p>"


def pair_page(pid: str, a: list[dict], b: list[dict], names: tuple[str, str]) -> str:
    """One shared problem: per method, run A's thought beside run B's."""
    first = (a or b)[0] if (a or b) else {}
    methods = sorted({method_of(t) for t in a + b}, key=method_order)
    sections = "".join(
        f"<section class='method' data-method='{esc(m)}'><h2>method {esc(m)}</h2><div class='pair'>"
        f"<div class='a'><h3>A: {esc(names[0])}</h3>{_side([t for t in a if method_of(t) == m])}</div>"
        f"<div class='b'><h3>B: {esc(names[1])}</h3>{_side([t for t in b if method_of(t) == m])}</div>"
        "</div></section>"
        for m in methods
    )
    body = (
        '<p><a href="../index.html">\u2190 comparison</a></p>'
        f"<h1>Problem <code>{esc(pid)}</code></h1>"
        f"<div class='problem'><pre id='problem-text'>{esc(first.get('problem', ''))}</pre></div>"
        f"<p>reference answer <code>{esc(first.get('reference', ''))}</code></p>"
        + (sections or "<p class='muted'>neither run has a thought for this problem</p>")
    )
    return page(f"{pid} \u2013 {names[0]} vs {names[1]}", body, css=THOUGHT_CSS + CSS)


def _names(a: Run, b: Run, dirs: tuple[Path, Path]) -> tuple[str, str]:
    na, nb = (r.stats.get("run") or d.name for r, d in zip((a, b), dirs))
    # Two runs of the same config share a name: the directories tell them apart.
    return (str(dirs[0]), str(dirs[1])) if na == nb else (na, nb)


def compare_runs(run_a: str | Path, run_b: str | Path, out_dir: str | Path) -> dict:
    """Write out_dir/index.html (the comparison) and out_dir/problems/<slug>-<hash>.html per shared
    problem, up to PAIR_PAGES; return small stats."""
    start = time.perf_counter()
    dirs = (Path(run_a), Path(run_b))
    for d in dirs:
        require_run(d)
    a, b = (load_run(d) for d in dirs)
    names = _names(a, b, dirs)
    ta, tb = _by_problem(a), _by_problem(b)
    in_b = set(_ids(b))
    shared = [pid for pid in _ids(a) if pid in in_b]
    out_dir = Path(out_dir)
    pages = out_dir / "problems"
    pages.mkdir(parents=True, exist_ok=True)
    links = []
    for pid in shared[:PAIR_PAGES]:
        ra, rb = ta.get(pid, []), tb.get(pid, [])
        write_text(pages / safe_name(pid), pair_page(pid, ra, rb, names))
        text = (ra or rb)[0]["problem"] if (ra or rb) else ""
        count = [sum(t["kind"] == "journey" and accepted(t) for t in rows) for rows in (ra, rb)]
        links.append(
            f"<tr data-problem-id='{esc(pid)}'><td><a href='problems/{esc(safe_name(pid))}'>{esc(pid)}</a></td>"
            f"<td>{esc(clip(text, 100))}</td><td class='num'>{count[0]}</td><td class='num'>{count[1]}</td></tr>"
        )
    more = (
        f"<p class='muted' id='pair-limit'>pages for the first {PAIR_PAGES:,} of {len(shared):,} shared "
        "problems (in run A's order)</p>"
        if len(shared) > PAIR_PAGES
        else ""
    )
    body = (
        f"<h1>Runs compared: A {esc(names[0])} vs B {esc(names[1])}</h1>"
        f"<p class='muted'>A: {esc(dirs[0])} \u00b7 B: {esc(dirs[1])}</p>"
        f"<h2>Headline figures (stats.json)</h2>{_headline_table(a, b, names)}"
        f"<h2>Methods</h2>{_method_table(a, b, names)}"
        f"<h2>Shared problems ({len(shared):,})</h2>{more}"
        "<table id='shared'><tr><th>problem id</th><th>problem</th><th>journeys A</th><th>journeys B</th></tr>"
        + "".join(links)
        + "</table>"
    )
    index = page(f"Compare {names[0]} vs {names[1]}", body, css=CSS)
    write_text(out_dir / "index.html", index)
    return {
        "shared_problems": len(shared),
        "pair_pages": len(links),
        "pages_written": len(links) + 1,
        "wall_s": round(time.perf_counter() - start, 3),
    }
