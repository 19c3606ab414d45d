"""Why a run yielded what it did: the share of problems with a journey, and what cost the rest, each
cause with the config field that changes it. stats.json, the dataset card, the report and the
Snakemake log all show this one report."""

from __future__ import annotations

from pipeline.config import Config
from trees.model import ROOT_ID, Tree

LOW_YIELD = 0.5  # under this share of problems with a journey, the run warns


class YieldError(RuntimeError):
    """The run yielded less than export.min_yield."""


def _cause(cause: str, count: int, of: int, unit: str, setting: str, advice: str) -> dict:
    return {"cause": cause, "count": count, "of": of, "unit": unit, "setting": setting, "advice": advice}


def yield_causes(cfg: Config, trees: list[Tree]) -> list[dict]:
    """What kept trees from a verified correct leaf, most frequent first; causes that did not occur
    are left out."""
    p = cfg.policy
    generated = [n for t in trees for n in t if n.node_id != ROOT_ID]
    terminal = [n for n in generated if n.is_terminal]
    unanswered = [n for n in terminal if n.answer is None]
    answered = [n for n in terminal if n.answer is not None]
    depth1 = [t for t in trees if any(t.nodes[c].kept for c in t.children[ROOT_ID])]
    finished = {t.problem_id for t in trees for n in t if n.is_terminal}
    causes = [
        _cause(
            "leaves cut at max depth without a final answer",
            sum(n.depth >= p.max_depth for n in unanswered),
            len(terminal),
            "terminal nodes",
            "policy.max_depth",
            f"raise policy.max_depth (now {p.max_depth}), or use problems that need fewer steps",
        ),
        _cause(
            "leaves that ended without a final answer",
            sum(n.depth < p.max_depth for n in unanswered),
            len(terminal),
            "terminal nodes",
            "policy.prompt",
            "the policy closed its turn without \\boxed{}: ask for it in the policy prompt, "
            "or let answers be read without it (answer_check.unboxed)",
        ),
        _cause(
            "answered leaves whose answer is wrong",
            sum(n.answer_correct is False for n in answered),
            len(answered),
            "answered leaves",
            "policy.engine",
            "a stronger policy model, or more samples per step (policy.width)",
        ),
        _cause(
            "answers the check could not decide",
            sum(n.answer_checker == "undecided" for n in answered),
            len(answered),
            "answered leaves",
            "answer_check.judge",
            "see the problems stage's unreadable references; an LLM judge decides what math-verify cannot",
        ),
        _cause(
            "steps cut at the step token limit",
            sum(n.tokens >= p.max_step_tokens for n in generated),
            len(generated),
            "steps",
            "policy.max_step_tokens",
            f"raise policy.max_step_tokens (now {p.max_step_tokens})",
        ),
        _cause(
            "trees killed by pruning at depth 1",
            len(trees) - len(depth1),
            len(trees),
            "trees",
            "pruning.keep",
            "every first step was pruned: check the scorer's verdicts (eval-scorer), raise pruning.keep "
            "or policy.width",
        ),
        _cause(
            "trees with no finished path",
            len(trees) - len(finished),
            len(trees),
            "trees",
            "pruning.scorer",
            "every branch was pruned before an answer: check the scorer (eval-scorer) or raise pruning.keep",
        ),
    ]
    causes = [c for c in causes if c["count"]]
    return sorted(causes, key=lambda c: -c["count"] / max(c["of"], 1))


def yield_report(cfg: Config, trees: list[Tree], with_journey: int, exports: dict[str, int]) -> dict:
    """The run's yield: problems with a journey over trees built, its causes, and empty files."""
    n = len(trees)
    share = round(with_journey / n, 3) if n else 0.0
    empty = [f for f, rows in exports.items() if f.endswith(".parquet") and rows == 0]
    message = f"{with_journey} of {n} problems gave a journey ({share:.0%})."
    if empty:
        message += f" Empty training files: {', '.join(empty)}."
    return {
        "problems": n,
        "problems_with_journey": with_journey,
        "share": share,
        "low": share < LOW_YIELD,
        "min_yield": cfg.export.min_yield,
        "message": message,
        "empty_files": empty,
        "causes": yield_causes(cfg, trees),
    }


def yield_lines(report: dict) -> list[str]:
    """The report as log lines: the message, then one line per cause with its setting.

    >>> yield_lines({"message": "1 of 4 problems gave a journey (25%).", "causes": [_cause(
    ...     "trees killed by pruning at depth 1", 3, 4, "trees", "pruning.keep", "raise it")]})
    ['1 of 4 problems gave a journey (25%).', '  3 of 4 trees: trees killed by pruning at depth 1 -> pruning.keep: raise it']
    """
    lines = [report["message"]]
    for c in report["causes"]:
        lines.append(
            f"  {c['count']} of {c['of']} {c['unit']}: {c['cause']} -> {c['setting']}: {c['advice']}"
        )
    return lines


def check_min_yield(report: dict, min_yield: float | None) -> None:
    if min_yield is not None and report["share"] < min_yield:
        raise YieldError(
            f"yield {report['share']:.0%} is under export.min_yield ({min_yield:.0%}): "
            + "\n".join(yield_lines(report))
        )
