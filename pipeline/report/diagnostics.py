"""Why the run yielded what it did, from stats.json: the yield report with each cause and the config
field to change, the pruning scorer against the tree values, and polish passes by attempt. Runs whose
stats.json predates a key show nothing for it."""

from __future__ import annotations

from pipeline.report.html import esc

CSS = """
#yield{border:1px solid #d0d7de;border-left:6px solid #2da44e;border-radius:6px;padding:.4em .9em;margin:.5em 0 1em}
#yield.low{border-left-color:#cf222e;background:#fff8f8}
#yield .flag{color:#cf222e;font-weight:600}#yield p.message{font-size:1.1em;margin:.3em 0}
#diagnostics{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
"""


def _td(value) -> str:
    cls = ' class="num"' if isinstance(value, int | float) else ""
    return f"<td{cls}>{esc(value)}</td>"


def _table(table_id: str, head: tuple[str, ...], rows: list[tuple]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><tr>{th}</tr>{body}</table>'


def yield_html(report: dict) -> str:
    """The yield message and its causes; a low yield is flagged in red with the words "low yield"."""
    low = bool(report.get("low"))
    flag = "<span class='flag'>low yield: </span>" if low else ""
    causes = report.get("causes") or []
    rows = [
        (c["cause"], f"{c['count']:,} of {c['of']:,} {c['unit']}", c["setting"], c["advice"]) for c in causes
    ]
    table = (
        _table("yield-causes", ("cause", "count", "setting to change", "advice"), rows)
        if rows
        else "<p class='muted'>no cause recorded</p>"
    )
    return (
        f'<section id="yield" class="{"low" if low else "ok"}"><h2>Yield</h2>'
        f"<p class='message'>{flag}{esc(report.get('message', ''))}</p>{table}</section>"
    )


def agreement_html(agree: dict) -> str:
    """The pruning scorer's verdicts against the tree values: where it called a step correct whose
    subtree holds no verified leaf, and the reverse."""
    share = agree.get("share_disagree")
    rows = [
        ("steps with both", agree.get("steps")),
        ("agree", agree.get("agree")),
        ("disagree", agree.get("disagree")),
        ("share disagreeing", "\u2013" if share is None else f"{share:.1%}"),
        ("scorer: correct, no verified leaf below", agree.get("scorer_correct_tree_dead")),
        ("scorer: incorrect, a verified leaf below", agree.get("scorer_incorrect_tree_alive")),
    ]
    return f"<div><h3>pruning scorer vs tree values</h3>{_table('agreement', ('', 'steps'), rows)}</div>"


def polish_passes_html(by_attempt: dict) -> str:
    # Shard sidecars are summed key by key, so attempts arrive in any order; "10" sorts after "9".
    order = sorted(by_attempt, key=lambda k: (len(str(k)), str(k)))
    rows = [(f"attempt {k}", by_attempt[k]) for k in order]
    return f"<div><h3>polish passes by attempt</h3>{_table('polish-passes', ('', 'passed'), rows)}</div>"


def yield_section(stats: dict) -> str:
    """The yield box for the top of the index; "" for a stats.json without a yield report."""
    return yield_html(stats["yield_report"]) if stats.get("yield_report") else ""


def diagnostics_html(stats: dict) -> str:
    """The scorer agreement and the polish passes side by side; "" for a stats.json with neither."""
    parts = []
    if stats.get("tree_value_agreement"):
        parts.append(agreement_html(stats["tree_value_agreement"]))
    by_attempt = ((stats.get("stages") or {}).get("polish") or {}).get("passed_by_attempt")
    if by_attempt:
        parts.append(polish_passes_html(by_attempt))
    if not parts:
        return ""
    return f'<h2>Scorer and polish</h2><section id="diagnostics">{"".join(parts)}</section>'
