"""The marks on a tree node, kept apart because they can disagree: the pruning scorer's verdict on the
step, and the check of a terminal node's answer against the reference (a step judged correct can end
in a wrong answer). A terminal node without an answer says why: cut at max depth, or no final answer."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.report.html import clip, esc
from trees.model import VERDICTS, Node

CUT_AT_MAX_DEPTH = "cut at max depth"
NO_FINAL_ANSWER = "no final answer"
CUT_AT_TOKEN_LIMIT = "cut at the step token limit"
SIGNS = {"correct": "\u2713 verified", "wrong": "\u2717 wrong", "unchecked": "? unchecked"}

CSS = """
.mark{display:inline-block;font-size:.82em;padding:0 5px;margin-left:4px;white-space:nowrap}
.mark.verdict{border:1px solid;border-radius:9px}
.mark.verdict.v-correct{color:#1a7f37}.mark.verdict.v-incorrect{color:#cf222e}.mark.verdict.v-unknown{color:#6e7781}
.mark.check{border-radius:2px;color:#fff}
.mark.ck-correct{background:#1a7f37}.mark.ck-wrong{background:#cf222e}.mark.ck-unchecked{background:#6e7781}
.mark.ck-none,.mark.limit{background:#fff;color:#9a6700;border:1px dashed #9a6700;border-radius:2px}
"""

LEGEND = (
    "<span><span class='mark verdict v-correct'>critic: correct</span> rounded: the pruning scorer's "
    "verdict on the step (correct / incorrect / unknown)</span>"
    "<span><span class='mark check ck-wrong'>answer 5 \u2717 wrong \u00b7 math-verify</span> filled: "
    "the final answer checked against the reference (\u2713 verified, \u2717 wrong, ? undecided), "
    "and what decided it</span>"
    f"<span><span class='mark check ck-none'>{CUT_AT_MAX_DEPTH}</span> the path reached "
    "policy.max_depth before an answer; "
    f"<span class='mark check ck-none'>{NO_FINAL_ANSWER}</span> the model ended its turn without one</span>"
)


@dataclass(frozen=True)
class Limits:
    """The policy limits the run used (config.yaml); None where the run does not say."""

    max_depth: int | None = None
    max_step_tokens: int | None = None


def leaf_label(node: Node, limits: Limits) -> str | None:
    """Why a terminal node has no answer; None for a node that has one or is not terminal.

    >>> leaf_label(Node("p", 4, 1, 4, "and so", is_terminal=True), Limits(max_depth=4))
    'cut at max depth'
    >>> leaf_label(Node("p", 4, 1, 2, "done.", is_terminal=True), Limits(max_depth=4))
    'no final answer'
    """
    if not node.is_terminal or node.answer is not None:
        return None
    if limits.max_depth is not None and node.depth >= limits.max_depth:
        return CUT_AT_MAX_DEPTH
    return NO_FINAL_ANSWER


def check_state(node: Node) -> str:
    """correct / wrong / unchecked for an answered terminal node, none without an answer."""
    if node.answer is None:
        return "none"
    return {True: "correct", False: "wrong"}.get(node.answer_correct, "unchecked")


def verdict_mark(node: Node) -> str:
    verdict = node.verdict if node.verdict in VERDICTS else "unknown"
    # A step no scorer saw (a duplicate sibling) is unknown for a different reason than an undecided one.
    text = f"{node.scorer}: {verdict}" if node.scorer else ("not judged" if verdict == "unknown" else verdict)
    return (
        f'<span class="mark verdict v-{verdict}" data-verdict="{verdict}" '
        f'title="the pruning scorer\'s verdict on this step">{esc(text)}</span>'
    )


def check_text(node: Node, limits: Limits) -> str:
    """What the answer check says about a terminal node, e.g. "answer 5 \u2717 wrong \u00b7 math-verify"."""
    state = check_state(node)
    if state == "none":
        return leaf_label(node, limits) or ""
    undecided = node.answer_checker == "undecided"
    sign = "? undecided" if undecided else SIGNS[state]
    by = f" \u00b7 {node.answer_checker}" if node.answer_checker and not undecided else ""
    return f"answer {clip(node.answer, 40)} {sign}{by}"


def check_mark(node: Node, limits: Limits) -> str:
    state = check_state(node)
    return (
        f'<span class="mark check ck-{state}" data-check="{state}" '
        f'title="the final answer checked against the reference">{esc(check_text(node, limits))}</span>'
    )


def node_marks(node: Node, limits: Limits) -> str:
    """The marks shown on a node: the verdict (not on the root), the answer check on terminal nodes,
    and a step cut at the token limit."""
    if node.is_root:
        return ""
    marks = [verdict_mark(node)]
    if node.is_terminal:
        marks.append(check_mark(node, limits))
    if limits.max_step_tokens is not None and node.tokens >= limits.max_step_tokens:
        marks.append(f'<span class="mark limit">{CUT_AT_TOKEN_LIMIT}</span>')
    return "".join(marks)
