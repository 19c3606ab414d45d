"""Run summary: numbers computed from the run's tables plus stats.json, and their HTML with charts."""

from __future__ import annotations

import statistics

from pipeline.report.charts import bar_chart, histogram
from pipeline.report.html import esc
from pipeline.report.keywords import KEYWORDS, profile
from trees.model import Tree


def leaf_outcomes(tree: Tree) -> tuple[int, int]:
    """(correct, incorrect) checked terminal nodes of a tree."""
    correct = sum(1 for n in tree if n.is_terminal and n.answer_correct is True)
    wrong = sum(1 for n in tree if n.is_terminal and n.answer_correct is False)
    return correct, wrong


def summarize(problems: list[dict], trees: dict[str, Tree], thoughts: list[dict], stats: dict) -> dict:
    journeys = [t for t in thoughts if t["kind"] == "journey"]
    with_journey = {t["problem_id"] for t in journeys}
    sizes = [len(t) for t in trees.values()]
    outcomes = [leaf_outcomes(t) for t in trees.values()]
    statuses: dict[str, int] = {}
    for t in journeys:
        status = t.get("polish_status") or "not polished"
        statuses[status] = statuses.get(status, 0) + 1
    attempted = statuses.get("polished", 0) + statuses.get("fallback", 0)
    pass_rate = stats.get("polish_guard_pass_rate")
    if pass_rate is None and attempted:
        pass_rate = round(statuses.get("polished", 0) / attempted, 4)
    n_problems = len(problems) or len(trees)
    return {
        "run": stats.get("run", ""),
        "problems": n_problems,
        "trees": len(trees),
        "problems_with_journey": len(with_journey),
        "journey_yield": round(len(with_journey) / n_problems, 4) if n_problems else None,
        "journeys": len(journeys),
        "nodes": sum(sizes),
        "tree_size": {
            "min": min(sizes, default=None),
            "median": statistics.median(sizes) if sizes else None,
            "max": max(sizes, default=None),
            "histogram": histogram(sizes),
        },
        "correct_leaves": sum(c for c, _ in outcomes),
        "incorrect_leaves": sum(w for _, w in outcomes),
        "verdicts": stats.get("verdicts") or {},
        "prune_reasons": stats.get("prune_reasons") or {},
        "tokens": stats.get("tokens") or {},
        "wall_s": {k: v for k, v in (stats.get("wall_s") or {}).items() if v is not None},
        "polish_guard_pass_rate": pass_rate,
        "polish_status": statuses,
        "polish_failed_checks": stats.get("polish_failed_checks") or {},
        "keywords": {
            "journey text": profile(t["text"] for t in journeys),
            "raw (before polish)": profile(t.get("raw_text") or t["text"] for t in journeys),
            "polisher output": profile(t.get("polished_text") or "" for t in journeys),
        },
        "backtracks": histogram([t["n_backtracks"] for t in journeys]),
    }


DASH = "\u2013"


def _pct(x) -> str:
    return DASH if x is None else f"{x * 100:.1f}%"


def summary_html(s: dict) -> str:
    size = s["tree_size"]
    cards = [
        ("problems", f"{s['problems']:,}"),
        ("with a journey", f"{s['problems_with_journey']:,} ({_pct(s['journey_yield'])})"),
        ("journeys", f"{s['journeys']:,}"),
        ("tree nodes", f"{s['nodes']:,}"),
        ("tree size min / median / max", f"{size['min']} / {size['median']} / {size['max']}"),
        ("correct / incorrect leaves", f"{s['correct_leaves']:,} / {s['incorrect_leaves']:,}"),
        ("tokens", f"{sum(v or 0 for v in s['tokens'].values()):,}"),
        ("wall time", f"{sum(s['wall_s'].values()):.1f} s"),
        ("polish guard pass rate", _pct(s["polish_guard_pass_rate"])),
    ]
    card_html = "".join(f'<div class="card"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in cards)
    kw = s["keywords"]
    kw_rows = "".join(
        f"<tr><th>{esc(name)}</th><td class='num'>{p['words']:,}</td>"
        + "".join(
            f"<td class='num'>{DASH if p['per_1000'][k] is None else p['per_1000'][k]}"
            f" <span class='muted'>({p['counts'][k]})</span></td>"
            for k in KEYWORDS
        )
        + "</tr>"
        for name, p in kw.items()
    )
    kw_table = (
        "<table><tr><th>text</th><th>words</th>"
        + "".join(f"<th>{esc(k)}</th>" for k in KEYWORDS)
        + f"</tr>{kw_rows}</table>"
        + "<p class='muted'>per 1000 words (raw count in brackets)</p>"
    )
    charts = [
        bar_chart("time per stage", list(s["wall_s"].items()), unit=" s"),
        bar_chart("tokens", list(s["tokens"].items())),
        bar_chart("tree size (nodes)", s["tree_size"]["histogram"]),
        bar_chart("verdicts", list(s["verdicts"].items())),
        bar_chart("prune reasons", list(s["prune_reasons"].items())),
        bar_chart("backtracks per journey", s["backtracks"]),
        bar_chart("polish status of journeys", list(s["polish_status"].items())),
        bar_chart("failed polish guard checks", list(s["polish_failed_checks"].items())),
        bar_chart(
            "keywords per 1000 words (journey text)",
            [(k, v or 0) for k, v in kw["journey text"]["per_1000"].items()],
        ),
    ]
    return (
        f'<section id="summary"><div class="cards">{card_html}</div>'
        f"<h2>Keyword profile</h2>{kw_table}"
        f'<h2>Charts</h2><div class="charts">{"".join(charts)}</div></section>'
    )
