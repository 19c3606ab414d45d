"""Method annotation (seed 003's human-AI collaboration): an LLM expands a person's short annotation
of the thinking into a fine-grained long thought.

The expansion runs in the polish stage's guarded attempts (each annotation through its own, one
engine call per attempt): it must keep every annotated attempt and correction (the polish guard's
fuzzy match), in the annotation's order, hold a doubt marker per reflection, and end at a \\boxed{}
answer that verifies.
A failing expansion is retried with what failed; after the last attempt it is kept with
correct=False and its failed checks counted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from pipeline.answers import AnswerChecker, extract_boxed
from pipeline.config import Config
from pipeline.engines import Completion, EnginePool
from pipeline.io.tables import ThoughtRow
from pipeline.methods.annotation_notes import Notes, match_notes, read_notes
from pipeline.polish.feedback import quote_steps
from pipeline.polish.guard import GuardResult, missing_steps, out_of_order
from pipeline.polish.rounds import Journey, Rounds, attempt_stats
from pipeline.prompts import fill, load_yaml

log = logging.getLogger(__name__)
READS = "problems"  # built from the shard's problems (and the annotation file), through the engines
REJECTS_LISTED = 20  # bad annotation rows listed in the stats (all are counted)
ECHO_SIMILARITY = 95  # a feedback line matched this closely in an expansion was copied, not followed


class _ExpansionRounds(Rounds):
    """The polish attempts, plus checks that the kept entries come in the annotation's order and that
    a retry does not copy its feedback."""

    name = "annotation"

    def _order(self, j: Journey, comp: Completion) -> int | None:
        return out_of_order(j.row["steps"], comp.text, self.p.min_step_similarity)

    def _failed(self, j: Journey, comp: Completion, guard: GuardResult) -> list[str]:
        failed = super()._failed(j, comp, guard)
        late = self._order(j, comp)
        if late is not None:
            failed.append(f"order: entry {late + 1} comes before the entry ahead of it in the annotation")
        if self._echoed(j, comp) and not guard.echoed:  # the guard's own echo check said it already
            failed.append("echo: it repeats the retry feedback instead of following it")
        return failed

    def _echoed(self, j: Journey, comp: Completion) -> bool:
        """Whether the text copies a line of the feedback it was given. The feedback quotes the
        entries, the answer and the markers, so a copy would pass every other check (the 135M model
        did, once, on the shipped sample)."""
        # Only lines no longer than the text: a short text inside a long line is no copy of it.
        lines = [
            s for s in (line.strip() for line in j.feedback.splitlines()) if s and len(s) <= len(comp.text)
        ]
        return len(missing_steps(lines, comp.text, ECHO_SIMILARITY)) < len(lines)

    def _feedback(self, j: Journey, comp: Completion, guard: GuardResult, cut: bool) -> str:
        lines = [super()._feedback(j, comp, guard, cut)]
        late = self._order(j, comp)
        if late is not None:
            template = load_yaml(self.p.prompt)["retry"]["order"]
            lines.append(fill(template, step=quote_steps(j.row["steps"], [late])))
        if self._echoed(j, comp) and not guard.echoed:
            lines.append(load_yaml(self.p.prompt)["retry"]["echo"])
        return "\n".join(line for line in lines if line)


def _journey(problem: dict, notes: Notes, index: int, budget: int) -> Journey:
    # The shape the polish rounds read: the annotation as the text to rewrite, the attempts and
    # corrections as the steps to keep, one doubt marker needed per reflection.
    row = {
        "thought_id": f"{problem['problem_id']}/annotation-{index}",
        "problem_id": problem["problem_id"],
        "problem": problem["problem"],
        "reference": problem["answer"],
        "answer": problem["answer"],  # a retry is told to end at the reference answer
        "text": notes.text,
        "steps": notes.kept,
        "n_backtracks": notes.reflections,
    }
    return Journey(row, 0, budget)


def _thought_row(j: Journey, seed: int) -> dict:
    last = j.attempts[-1]
    text = last.text.strip()
    steps = [s.strip() for s in text.split("\n\n") if s.strip()]
    r = j.row
    return ThoughtRow(
        problem_id=r["problem_id"],
        thought_id=r["thought_id"],
        kind="journey",
        problem=r["problem"],
        reference=r["reference"],
        text=text,
        steps=steps,
        answer=extract_boxed(text),
        seed=seed,
        method="annotation",
        correct=j.passed,
        n_backtracks=r["n_backtracks"],
        n_reflections=r["n_backtracks"],
        engine_tokens=sum(a.tokens for a in j.attempts),
    ).as_row()


def build(
    cfg: Config, problems: list[dict], pool: EnginePool, checker: AnswerChecker
) -> tuple[list[dict], dict]:
    """One journey per annotation of a shard's problem; problems without one are counted."""
    start = time.perf_counter()
    a = cfg.annotation
    loaded = read_notes(a)
    matched = match_notes(problems, loaded.notes)
    journeys = [
        _journey(p, notes, i, a.max_tokens)
        for p in problems
        for i, notes in enumerate(matched.get(p["problem_id"], []))
    ]
    if loaded.rejects:
        log.warning(
            "%d of %d annotation rows rejected from %s (first: row %d, %s: %s)",
            len(loaded.rejects),
            loaded.rows_read,
            a.source,
            loaded.rejects[0]["row"],
            loaded.rejects[0]["field"],
            loaded.rejects[0]["reason"],
        )
    engine_stats = {}
    if journeys:
        _ExpansionRounds(cfg.seed, a, journeys, pool.get(a.engine), checker).run()
        engine_stats = pool.stats([a.engine])
    rows = [_thought_row(j, cfg.seed) for j in journeys]
    without = [p["problem_id"] for p in problems if p["problem_id"] not in matched]
    passed = sum(r["correct"] for r in rows)
    stats = {
        "annotation_rows_read": loaded.rows_read,
        "annotation_rows_rejected": len(loaded.rejects),
        "annotation_rejects_by_field": dict(Counter(r["field"] for r in loaded.rejects)),
        "annotation_rejects": [
            {k: r[k] for k in ("row", "problem_id", "field", "reason")}
            for r in loaded.rejects[:REJECTS_LISTED]
        ],
        "problems_without_annotation": len(without),
        "problems_without_annotation_ids": without,
        "expansions": len(rows),
        "expansions_passed": passed,
        "guard_pass_rate": round(passed / len(rows), 4) if rows else None,
        # raw_tokens (the polish stage's input length) has no meaning for an annotation.
        **{k: v for k, v in attempt_stats(journeys).items() if k != "raw_tokens"},
        "engine_tokens": sum(r["engine_tokens"] for r in rows),
        "engines": engine_stats,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    return rows, stats
