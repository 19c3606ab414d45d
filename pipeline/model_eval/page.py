"""The evaluation's pages: index.html with the models side by side and every pair compared, and one
page per problem with each model's greedy output and its answer check side by side. Model text is escaped."""

from __future__ import annotations

from collections import defaultdict

from pipeline.model_eval.summary import GREEDY, interval_text
from pipeline.report.html import esc, num_cell, page, safe_name, table

CSS = """
.ok{color:#1a7f37}.bad{color:#cf222e}.noise{color:#777}
.side{display:grid;grid-auto-flow:column;grid-auto-columns:minmax(18em,1fr);gap:1em;overflow-x:auto}
.side>div{border:1px solid #ddd;border-radius:6px;padding:.5em .8em}
"""


def _models_table(summary: dict) -> str:
    ks = sorted({k for m in summary["models"].values() for k in m["pass_at_k"]}, key=int)
    head = ["model", "greedy accuracy", "95% interval", "correct", "no answer", "cut at max_tokens"]
    head += [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks]
    head += [
        "tokens (mean)",
        "words (mean)",
        "wait / answer",
        "alternatively / answer",
        "backtracks / answer",
    ]
    rows = []
    for name, m in summary["models"].items():
        g, per = m["greedy"], m["per_answer"]
        rows.append(
            f"<tr><td>{esc(name)}<div class='muted'>{esc(m['model_path'])}</div></td>"
            + num_cell(g["accuracy"])
            + f"<td class='num'>{esc(interval_text(g['ci95']))}</td>"
            + num_cell(f"{g['correct']}/{m['problems']}")
            + num_cell(g["no_answer"])
            + num_cell(g["cut_at_max_tokens"])
            + "".join(num_cell(m["pass_at_k"].get(k)) for k in ks)
            + "".join(num_cell(m["maj_at_k"].get(k)) for k in ks)
            + num_cell(m["tokens_mean"], 1)
            + num_cell(m["words_mean"], 1)
            + "".join(num_cell(per.get(k)) for k in ("wait", "alternatively", "backtracks"))
            + "</tr>"
        )
    return table(head, rows)


def _pairs_table(summary: dict) -> str:
    rows = []
    for c in summary["comparisons"]:
        verdict = (
            "<td class='noise'>within noise</td>"
            if c["within_noise"]
            else f"<td class='ok'>{esc(c['a'] if c['difference'] > 0 else c['b'])} better</td>"
        )
        rows.append(
            f"<tr><td>{esc(c['a'])}</td><td>{esc(c['b'])}</td>"
            + num_cell(c["difference"])
            + num_cell(c["only_a"])
            + num_cell(c["only_b"])
            + num_cell(c["mcnemar_p"], 4)
            + verdict
            + "</tr>"
        )
    head = ["A", "B", "accuracy A - B", "only A right", "only B right", "McNemar p", ""]
    return table(head, rows)


def index_page(summary: dict, rows: list[dict]) -> str:
    problems = {}
    right: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["sample"] == GREEDY:
            problems.setdefault(r["problem_id"], r)
            if r["correct"]:
                right[r["problem_id"]].append(r["model"])
    listing = [
        f"<tr><td><a href='problems/{esc(safe_name(pid))}'>{esc(pid)}</a></td><td>{esc(r['problem'])}</td>"
        f"<td>{esc(r['reference'])}</td><td>{esc(', '.join(right[pid]) or '-')}</td></tr>"
        for pid, r in problems.items()
    ]
    bench = summary["benchmark"]
    overlap = summary["overlap_with_training"]
    body = (
        "<h1>Model evaluation</h1>"
        f"<p class='muted'>{summary['problems']} problems from {esc(bench['source'])}; greedy answers "
        f"(temperature 0) and {summary['samples']} sampled at temperature {summary['temperature']}; "
        f"answers checked by {esc(', '.join(summary['checkers']))}.</p>"
        + (
            f"<p class='bad'>{overlap['count']} benchmark problems are also training problems of this run.</p>"
            if overlap["count"]
            else ""
        )
        + "<h2>Models</h2>"
        + _models_table(summary)
        + f"<h2>Pairs (greedy, same problems; within noise: McNemar p &ge; {summary['noise_p']})</h2>"
        + _pairs_table(summary)
        + "<h2>Problems</h2>"
        + table(["problem", "text", "reference", "greedy right"], listing)
    )
    return page("Model evaluation", body, css=CSS)


def problem_page(problem_rows: list[dict], models: list[str]) -> str:
    """One problem: each model's greedy output with its check, and its sampled answers."""
    first = problem_rows[0]
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in problem_rows:
        by_model[r["model"]].append(r)
    columns = []
    for name in models:
        mine = sorted(by_model.get(name, []), key=lambda r: r["sample"])
        if not mine:
            continue
        greedy, sampled = mine[0], mine[1:]
        mark = "ok" if greedy["correct"] else "bad"
        samples = ", ".join(
            f"<span class='{'ok' if r['correct'] else 'bad'}'>{esc(r['answer'] or '-')}</span>"
            for r in sampled
        )
        columns.append(
            f"<div><h3>{esc(name)}</h3><p class='{mark}'>answer {esc(greedy['answer'] or '(none)')}: "
            f"{'correct' if greedy['correct'] else 'not correct'} ({esc(greedy['checker'])}"
            f"{esc(': ' + greedy['check_reason']) if greedy['check_reason'] else ''})</p>"
            f"<p class='muted'>{greedy['tokens']} tokens, {esc(greedy['finish_reason'])}</p>"
            f"<pre>{esc(greedy['text'])}</pre>"
            + (f"<p>sampled answers: {samples}</p>" if sampled else "")
            + "</div>"
        )
    body = (
        f"<p><a href='../index.html'>all problems</a></p><h1>{esc(first['problem_id'])}</h1>"
        f"<p>{esc(first['problem'])}</p><p>reference: <b>{esc(first['reference'])}</b></p>"
        f"<div class='side'>{''.join(columns)}</div>"
    )
    return page(f"{first['problem_id']}: model outputs", body, css=CSS)
