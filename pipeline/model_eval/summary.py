"""The figures of an evaluation from its output rows: per model accuracy with its interval, pass@k and
maj@k, output length and reflective keywords, and each pair of models compared on the same problems."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations
from statistics import mean

from pipeline.model_eval.scores import ks, majority_correct, mcnemar_p, pass_at_k, wilson
from pipeline.report.keywords import backtrack_count, keyword_counts, word_count

GREEDY = -1
NOISE_P = 0.05  # a pair whose McNemar p is at or above this is "within noise"


def interval_text(ci) -> str:
    """
    >>> interval_text((0.1381, 0.6094)), interval_text(None)
    ('0.14-0.61', '-')
    """
    return "-" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"


def _share(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def model_figures(rows: list[dict]) -> dict:
    """One model's figures from its rows (greedy: sample -1; sampled: 0 .. n-1)."""
    greedy = [r for r in rows if r["sample"] == GREEDY]
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["sample"] != GREEDY:
            by_problem[r["problem_id"]].append(r)
    n = min((len(v) for v in by_problem.values()), default=0)
    hits = sum(r["correct"] for r in greedy)
    words = [word_count(r["text"]) for r in greedy]
    figures = {
        "problems": len(greedy),
        "greedy": {
            "correct": hits,
            "accuracy": _share(hits, len(greedy)),
            "ci95": wilson(hits, len(greedy)),
            "no_answer": sum(r["answer"] is None for r in greedy),
            "cut_at_max_tokens": sum(r["finish_reason"] == "length" for r in greedy),
            "failed": sum(r["finish_reason"] == "error" for r in greedy),
        },
        "samples": n,
        "pass_at_k": {},
        "maj_at_k": {},
        "tokens_mean": round(mean(r["tokens"] for r in greedy), 1) if greedy else None,
        "words_mean": round(mean(words), 1) if words else None,
        "per_answer": _per_answer([r["text"] for r in greedy]),
        "checkers": _counts(r["checker"] for r in rows),
    }
    for k in ks(n):
        samples = [v[:n] for v in by_problem.values()]
        figures["pass_at_k"][str(k)] = round(
            mean(pass_at_k(n, sum(r["correct"] for r in s), k) for s in samples), 4
        )
        figures["maj_at_k"][str(k)] = _share(
            sum(
                majority_correct([r["answer"] for r in s[:k]], [r["correct"] for r in s[:k]]) for s in samples
            ),
            len(samples),
        )
    return figures


def _per_answer(texts: list[str]) -> dict:
    """How often an answer stops to reflect or goes back (a journey model's habit), on average.

    >>> _per_answer(["Wait, that can't be right.", "2 + 2 = 4."])
    {'wait': 0.5, 'alternatively': 0.0, 'backtracks': 0.5}
    """
    if not texts:
        return {}
    keywords = [keyword_counts(t) for t in texts]
    out = {k: round(sum(c[k] for c in keywords) / len(texts), 3) for k in ("wait", "alternatively")}
    return out | {"backtracks": round(sum(map(backtrack_count, texts)) / len(texts), 3)}


def comparisons(rows_by_model: dict[str, list[dict]]) -> list[dict]:
    """Every pair of models on the problems both answered: greedy accuracy difference, the problems
    only one got right, McNemar's p, and whether the difference is within noise."""
    greedy = {
        name: {r["problem_id"]: r["correct"] for r in rows if r["sample"] == GREEDY}
        for name, rows in rows_by_model.items()
    }
    out = []
    for a, b in combinations(greedy, 2):
        shared = sorted(greedy[a].keys() & greedy[b].keys())
        ca, cb = [greedy[a][p] for p in shared], [greedy[b][p] for p in shared]
        p = mcnemar_p(ca, cb)
        out.append(
            {
                "a": a,
                "b": b,
                "problems": len(shared),
                "difference": round((sum(ca) - sum(cb)) / len(shared), 4) if shared else None,
                "only_a": sum(x and not y for x, y in zip(ca, cb)),
                "only_b": sum(y and not x for x, y in zip(ca, cb)),
                "mcnemar_p": p,
                "within_noise": p >= NOISE_P,
            }
        )
    return out


def _counts(values) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))
