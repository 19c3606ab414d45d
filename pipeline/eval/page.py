"""The evaluation's static page: a comparison table, each scorer's breakdowns and threshold sweep,
and the solutions with every scorer's judgement of each step. All model and data text is escaped."""

from __future__ import annotations

from pipeline.report.html import esc, num_cell, page, table

MAX_SOLUTIONS = 200  # solutions listed step by step; the parquet holds them all
CSS = """
.ok{color:#1a7f37}.bad{color:#cf222e}.unk{color:#9a6700}
details{margin:.2em 0}summary{cursor:pointer}.why{font-size:.9em;color:#555}
"""


def _comparison(summary: dict) -> str:
    head = [
        "scorer",
        "ProcessBench F1",
        "error acc.",
        "correct acc.",
        "first-error match",
        "step precision",
        "step recall",
        "step F1",
        "AUROC",
        "unknown",
        "tokens / step",
        "s / step",
        "cache hits",
    ]
    rows = []
    for name in summary["ranking"]:
        r = summary["scorers"][name]
        pb, st = r["processbench"], r["steps"]
        rows.append(
            f"<tr><td><a href='#s-{esc(name)}'>{esc(name)}</a></td>"
            + "".join(
                num_cell(v)
                for v in (
                    pb["f1"],
                    pb["error_accuracy"],
                    pb["correct_accuracy"],
                    pb["exact_match"],
                    st["precision"],
                    st["recall"],
                    st["f1"],
                    r["auroc"],
                )
            )
            + num_cell(r["unknown"])
            + num_cell(r["tokens_per_step"], 1)
            + num_cell(r["seconds_per_step"], 3)
            + num_cell(r["cache_hits"])
            + "</tr>"
        )
    return table(head, rows)


def _scorer_section(name: str, r: dict) -> str:
    overrides = ", ".join(f"{k}: {v}" for k, v in r["overrides"].items())
    parts = [
        f"<h2 id='s-{esc(name)}'>{esc(name)}</h2>",
        f"<p class='muted'>scorer {esc(r['scorer'])}{esc(' with ' + overrides) if overrides else ''}; "
        f"verdicts {esc(', '.join(f'{k} {v}' for k, v in sorted(r['verdicts'].items())))}</p>",
    ]
    if r["problems"]:
        rows = [f"<tr><td>{esc(why)}</td>{num_cell(n)}</tr>" for why, n in sorted(r["problems"].items())]
        parts.append("<h3>Unclean judgements</h3>" + table(["why", "steps"], rows))
    for column, values in r["by_group"].items():
        rows = [
            f"<tr><td>{esc(value)}</td>{num_cell(g['solutions'])}"
            + "".join(
                num_cell(g[k])
                for k in (
                    "processbench_f1",
                    "error_accuracy",
                    "correct_accuracy",
                    "exact_match",
                    "step_f1",
                    "auroc",
                )
            )
            + "</tr>"
            for value, g in values.items()
        ]
        head = [column, "solutions", "ProcessBench F1", "error acc.", "correct acc.", "first-error match"]
        parts.append(f"<h3>By {esc(column)}</h3>" + table([*head, "step F1", "AUROC"], rows))
    if r["sweep"]:
        keys = (
            "processbench_f1",
            "error_accuracy",
            "correct_accuracy",
            "step_precision",
            "step_recall",
            "step_f1",
        )
        rows = [
            f"<tr>{num_cell(s['threshold'], 2)}{''.join(num_cell(s[k]) for k in keys)}</tr>"
            for s in r["sweep"]
        ]
        head = [
            "flag below",
            "ProcessBench F1",
            "error acc.",
            "correct acc.",
            "step precision",
            "step recall",
        ]
        parts.append("<h3>Threshold sweep</h3>" + table([*head, "step F1"], rows))
    return "".join(parts)


def _verdict(row: dict) -> str:
    cls = {"correct": "ok", "incorrect": "bad"}.get(row["verdict"], "unk")
    score = "" if row["score"] is None else f" {row['score']:.2f}"
    why = row["rationale"] or row["scorer_problem"]
    return (
        f"<td><span class='{cls}'>{esc(row['verdict'] + score)}</span><div class='why'>{esc(why)}</div></td>"
    )


def _solutions(rows: list[dict], scorers: list[str]) -> str:
    by_solution: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        by_solution.setdefault(row["solution_id"], {}).setdefault(row["scorer"], []).append(row)
    out = []
    for solution_id, judged in list(by_solution.items())[:MAX_SOLUTIONS]:
        first = next(iter(judged.values()))
        label = first[0]["first_error"]
        predicted = ", ".join(
            f"{name} {next((r['step_index'] for r in judged[name] if r['verdict'] == 'incorrect'), -1)}"
            for name in scorers
        )
        lines = []
        for i, step in enumerate(first):
            mark = {True: "correct", False: "wrong", None: "unlabelled"}[step["label"]]
            lines.append(
                f"<tr><td class='num'>{i}</td><td><pre>{esc(step['step'])}</pre></td><td>{mark}</td>"
                + "".join(_verdict(judged[name][i]) for name in scorers)
                + "</tr>"
            )
        steps = table(["#", "step", "label", *scorers], lines)
        out.append(
            f"<details><summary>{esc(solution_id)}: first error {label}; predicted {esc(predicted)}"
            f"</summary><p>{esc(first[0]['problem'])}</p>{steps}</details>"
        )
    more = len(by_solution) - MAX_SOLUTIONS
    note = f"<p class='muted'>{more} more solutions in judgements.parquet</p>" if more > 0 else ""
    return "".join(out) + note


def eval_page(summary: dict, rows: list[dict]) -> str:
    """The whole page from the summary and the judgement rows."""
    scorers = list(summary["scorers"])
    body = (
        "<h1>Scorer evaluation</h1>"
        f"<p>{esc(summary['source'])} ({esc(summary['layout'])}): {summary['solutions']} solutions "
        f"({summary['erroneous_solutions']} with a wrong step), {summary['steps']} steps "
        f"({summary['labelled_steps']} labelled), {summary['rejected']} rows rejected. "
        "A step is flagged when judged incorrect; an unknown judgement flags nothing. ProcessBench F1 is the "
        "harmonic mean of first-error accuracy on the wrong solutions and accuracy on the correct ones.</p>"
        + _comparison(summary)
        + "".join(_scorer_section(name, summary["scorers"][name]) for name in summary["ranking"])
        + "<h2>Solutions</h2>"
        + _solutions(rows, scorers)
    )
    return page("Scorer evaluation", body, css=CSS)
