"""Methods side by side: per thoughts method of one run, on the same problems, its yield, thought
length, backtracks and reflections, keyword profile, engine tokens per accepted thought and polish
guard pass rate, as figures and as the summary's table."""

from __future__ import annotations

from statistics import fmean

from pipeline.report.html import esc
from pipeline.report.keywords import KEYWORDS, profile
from trees.model import Tree

# The order of config's thoughts.methods by default; a method not listed here sorts after them.
METHOD_ORDER = ("tree", "propose-critique", "debate", "annotation", "outcome")
DASH = "\u2013"

TREE_TOKENS_NOTE = (
    "Engine tokens of method tree: its thoughts are derived from the trees at no engine cost, so the "
    "policy, scorer and annotator tokens of the trees stage (stats.json tokens; without a stats.json, "
    "the tokens recorded on the nodes) are attributed to it, divided by its accepted journeys."
)
NOTES = (
    "attempted: problems the method ran on (tree: problems with a tree; annotation: those with an "
    "annotation). yield: attempted problems with a thought (outcome: a solution) whose final answer "
    "verifies. Length, backtracks, reflections and keywords: over the accepted thoughts, exported "
    "text. engine tokens: the engine_tokens of the method's rows summed, divided by its accepted "
    "thoughts. polish: polished / (polished + fallback) among the method's journeys the polish stage "
    "took. outcome rows are sampled solutions, not long thoughts: the share correct and the preference "
    "pairs exported from them (sft/preference.parquet, source outcome) stand in for the length."
)


def method_order(method: str) -> tuple[int, str]:
    """Sort key: METHOD_ORDER, then any other method by name."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def method_of(row: dict) -> str:
    # Tables written before the `method` column hold only the tree walk's thoughts.
    return row.get("method") or "tree"


def accepted(row: dict) -> bool:
    # `correct` is None only in tables from before the column, where every thought was a verified walk;
    # export takes the same rows (correct is not False).
    return row.get("correct") is not False


def reflections(row: dict) -> int:
    # Tables from before the column hold tree walks, which leave one reflection per backtrack.
    n = row.get("n_reflections")
    return row["n_backtracks"] if n is None else n


def tree_tokens(stats: dict, trees: dict[str, Tree]) -> int:
    """The trees stage's engine tokens: stats.json's, else the policy tokens recorded on the nodes."""
    tokens = stats.get("tokens") or {}
    if tokens:
        return sum(tokens.get(k) or 0 for k in ("policy", "scorer", "annotators"))
    return sum(n.tokens or 0 for t in trees.values() for n in t)


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 2) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _figures(
    method: str, rows: list[dict], attempted: set[str], shared: set[str], engine_tokens: int | None = None
) -> dict:
    solutions = [r for r in rows if r["kind"] == "solution"]
    thoughts = [r for r in rows if r["kind"] == "journey"]
    # The outcome method's samples are its thoughts: they are what its yield and tokens count.
    samples = thoughts or solutions
    good = [r for r in samples if accepted(r)]
    solved = {r["problem_id"] for r in good}
    polish = [r.get("polish_status") for r in thoughts]
    tried = sum(s in ("polished", "fallback") for s in polish)
    if engine_tokens is None:
        engine_tokens = sum(r.get("engine_tokens") or 0 for r in rows)
    kw = profile(r["text"] for r in good)
    return {
        "method": method,
        "attempted": len(attempted),
        "problems_with_thought": len(solved & attempted),
        "yield": _share(len(solved & attempted), len(attempted)),
        "shared_yield": _share(len(solved & shared), len(shared)),
        "samples": len(samples),
        "accepted": len(good),
        "long_thoughts": bool(thoughts),
        "chars_mean": _mean([len(r["text"]) for r in good]) if thoughts else None,
        "steps_mean": _mean([r["n_steps"] for r in good]) if thoughts else None,
        "backtracks_mean": _mean([r["n_backtracks"] for r in good]) if thoughts else None,
        "reflections_mean": _mean([reflections(r) for r in good]) if thoughts else None,
        "share_correct": None if thoughts else _share(len(good), len(solutions)),
        "keywords": kw["per_1000"],
        "words": kw["words"],
        "engine_tokens": engine_tokens,
        "tokens_per_accepted": round(engine_tokens / len(good), 1) if good else None,
        "polish_pass_rate": _share(polish.count("polished"), tried),
    }


def method_figures(
    thoughts: list[dict], trees: dict[str, Tree], stats: dict, outcome_pairs: int | None = None
) -> list[dict]:
    """One dict of figures per method present in the run, in METHOD_ORDER."""
    by_method: dict[str, list[dict]] = {}
    for r in thoughts:
        by_method.setdefault(method_of(r), []).append(r)
    if trees:
        by_method.setdefault("tree", [])
    attempted = {m: {r["problem_id"] for r in rows} for m, rows in by_method.items()}
    if "tree" in attempted:
        attempted["tree"] |= set(trees)
    # The problems every method attempted: the fair ground for comparing yields.
    shared = set.intersection(*attempted.values()) if attempted else set()
    out = []
    for m in sorted(by_method, key=method_order):
        tokens = tree_tokens(stats, trees) if m == "tree" else None
        f = _figures(m, by_method[m], attempted[m], shared, tokens)
        out.append({**f, "shared": len(shared), "pairs": outcome_pairs if m == "outcome" else None})
    return out


def fmt(value, kind: str = "num") -> str:
    """A figure as the tables show it: rates as percentages, missing ones as a dash."""
    if value is None:
        return DASH
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def length_cell(f: dict) -> str:
    """Thought length, or for sampled solutions the share correct and the pairs made of them."""
    if f["long_thoughts"] or f["share_correct"] is None:
        return f"{fmt(f['chars_mean'])} / {fmt(f['steps_mean'])}"
    return f"{fmt(f['share_correct'], 'pct')} correct \u00b7 {fmt(f.get('pairs'))} pairs"


def methods_html(figures: list[dict]) -> str:
    """The table of methods, a row each; "" when the run has no thoughts at all."""
    if not figures:
        return ""
    several = len(figures) > 1
    shared = figures[0]["shared"]
    head = ["method", "attempted", "yield"]
    if several:
        head.append(f"yield on the {shared:,} problems all attempted")
    head += ["accepted / thoughts", "length: chars / steps (mean)", "backtracks / thought"]
    head += ["reflections / thought", *(f"{k} /1000 words" for k in KEYWORDS)]
    head += ["engine tokens / accepted thought", "polish guard pass rate"]
    rows = []
    for f in figures:
        cells = [
            f"<th>{esc(f['method'])}</th>",
            f"<td class='num'>{fmt(f['attempted'])}</td>",
            f"<td class='num'>{fmt(f['problems_with_thought'])} ({fmt(f['yield'], 'pct')})</td>",
        ]
        if several:
            cells.append(f"<td class='num'>{fmt(f['shared_yield'], 'pct')}</td>")
        cells += [
            f"<td class='num'>{fmt(f['accepted'])} / {fmt(f['samples'])}</td>",
            f"<td class='num length'>{esc(length_cell(f))}</td>",
            f"<td class='num'>{fmt(f['backtracks_mean'])}</td>",
            f"<td class='num'>{fmt(f['reflections_mean'])}</td>",
            *(f"<td class='num'>{fmt(f['keywords'][k])}</td>" for k in KEYWORDS),
            f"<td class='num'>{fmt(f['tokens_per_accepted'])}</td>",
            f"<td class='num'>{fmt(f['polish_pass_rate'], 'pct')}</td>",
        ]
        rows.append(f'<tr data-method="{esc(f["method"])}">{"".join(cells)}</tr>')
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    title = "Methods side by side" if several else "Method"
    return (
        f'<section id="methods"><h2>{title}</h2><table id="method-table"><tr>{th}</tr>{"".join(rows)}</table>'
        f"<p class='muted'>{esc(NOTES)}</p><p class='muted' id='tree-tokens-note'>{esc(TREE_TOKENS_NOTE)}</p>"
        "</section>"
    )
