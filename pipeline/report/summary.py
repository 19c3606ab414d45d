"""Run summary: stats.json's figures where it has them (node counts, wall times, tokens, verdicts), the
rest counted from the run's tables, and their HTML with charts."""

from __future__ import annotations

import statistics

from pipeline.costs import used_engines
from pipeline.report.charts import bar_chart, histogram
from pipeline.report.html import esc
from pipeline.report.keywords import KEYWORDS, profile
from pipeline.report.methods import accepted
from trees.model import ROOT_ID, Tree

NODE_COUNTS = ("generated", "kept", "pruned")


def generated_nodes(tree: Tree) -> int:
    """Nodes the policy generated: the root holds the problem, so it is not one (as in stats.json)."""
    return len(tree) - 1


def node_counts(trees: dict[str, Tree], stats: dict) -> dict:
    """Generated (root excluded), kept and pruned nodes: stats.json's figures; counted the same way
    from the trees for a run that has no stats.json yet."""
    if stats.get("nodes_generated") is not None:
        return {k: stats.get(f"nodes_{k}") for k in NODE_COUNTS}
    generated = [n for t in trees.values() for n in t if n.node_id != ROOT_ID]
    kept = sum(n.kept for n in generated)
    return {"generated": len(generated), "kept": kept, "pruned": len(generated) - kept}


def leaf_outcomes(tree: Tree) -> tuple[int, int]:
    """(correct, incorrect) checked terminal nodes of a tree."""
    correct = sum(1 for n in tree if n.is_terminal and n.answer_correct is True)
    wrong = sum(1 for n in tree if n.is_terminal and n.answer_correct is False)
    return correct, wrong


def summarize(problems: list[dict], trees: dict[str, Tree], thoughts: list[dict], stats: dict) -> dict:
    # As export counts them: an engine method's thought whose answer does not verify is no journey.
    journeys = [t for t in thoughts if t["kind"] == "journey" and accepted(t)]
    with_journey = {t["problem_id"] for t in journeys}
    sizes = [generated_nodes(t) for t in trees.values()]
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
        "nodes": node_counts(trees, stats),
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
        "costs": stats.get("costs") or {},
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


def cost_html(costs: dict) -> str:
    """The run's cost per stage and engine; "" when no engine has prices."""
    if not costs.get("prices"):
        return ""
    rows = "".join(
        f"<tr><th>{esc(stage)}</th><td>{esc(name)}</td><td class='num'>{e['input_tokens']:,}</td>"
        f"<td class='num'>{e['output_tokens']:,}</td><td class='num'>{DASH if e['usd'] is None else e['usd']}</td>"
        f"<td class='num'>{DASH if e['saved_usd'] is None else e['saved_usd']}</td>"
        f"<td class='num'>{e['retries']} / {e['failed_requests']}</td></tr>"
        for stage, name, e in used_engines(costs)
    )
    total = costs["total"]
    unpriced = ", ".join(costs["unpriced_engines"]) or "none"
    return (
        f'<h2>Cost</h2><p id="cost">{total["usd"]} USD in all, {costs["per_journey_usd"]} per accepted journey;'
        f" the response cache saved {total['saved_usd']} USD of generated tokens. Unpriced engines: {esc(unpriced)}.</p>"
        "<table><tr><th>stage</th><th>engine</th><th>input tokens</th><th>output tokens</th><th>USD</th>"
        f"<th>saved, USD</th><th>retries / failed</th></tr>{rows}</table>"
    )


def summary_html(s: dict) -> str:
    size, nodes = s["tree_size"], s["nodes"]
    cards = [
        ("problems", f"{s['problems']:,}"),
        ("with a journey", f"{s['problems_with_journey']:,} ({_pct(s['journey_yield'])})"),
        ("journeys", f"{s['journeys']:,}"),
        ("generated nodes (root excluded)", f"{nodes['generated']:,}"),
        ("kept / pruned nodes", f"{nodes['kept']:,} / {nodes['pruned']:,}"),
        ("generated nodes per tree, min / median / max", f"{size['min']} / {size['median']} / {size['max']}"),
        ("correct / incorrect leaves", f"{s['correct_leaves']:,} / {s['incorrect_leaves']:,}"),
        ("tokens", f"{sum(v or 0 for v in s['tokens'].values()):,}"),
        ("wall time, stages summed (each over its shards)", f"{sum(s['wall_s'].values()):.1f} s"),
        ("polish guard pass rate", _pct(s["polish_guard_pass_rate"])),
    ]
    card_html = "".join(f'<div class="card"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in cards)
    stage_times = " \u00b7 ".join(f"{esc(k)} {v:g} s" for k, v in s["wall_s"].items())
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
        bar_chart("wall time per stage (shards summed)", list(s["wall_s"].items()), unit=" s"),
        bar_chart("tokens", list(s["tokens"].items())),
        bar_chart("generated nodes per tree (root excluded)", s["tree_size"]["histogram"]),
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
        f'<p id="stage-times" class="muted">wall time per stage, each summed over its shards: {stage_times or DASH}</p>'
        f"{cost_html(s['costs'])}"
        f"<h2>Keyword profile</h2>{kw_table}"
        f'<h2>Charts</h2><div class="charts">{"".join(charts)}</div></section>'
    )
