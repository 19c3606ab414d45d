"""A polish retry's prompt: the first attempt's, plus what the guard found wrong with the last rewrite."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from pipeline.polish.guard import GuardResult
from pipeline.prompts import fill, load_yaml

# A small polisher reads a short list better than every lost step of a long thought; the rest are
# counted, and the next retry quotes what is still missing.
QUOTED_STEPS = 4
QUOTE_WIDTH = 80


def quote_steps(steps: list[str], indices: tuple[int, ...] | list[int]) -> str:
    """The steps at `indices`, quoted and shortened, the first QUOTED_STEPS of them.

    >>> quote_steps(["2 + 3 = 5", "so the  answer is 5"], [0, 1])
    '"2 + 3 = 5"; "so the answer is 5"'
    >>> quote_steps([f"step {i}" for i in range(6)], range(1, 6))
    '"step 1"; "step 2"; "step 3"; "step 4" (and 1 more)'
    >>> quote_steps(["We add the two numbers " * 10], [0])[-11:]
    'We add ..."'
    """
    quoted = "; ".join(
        '"' + textwrap.shorten(steps[i], QUOTE_WIDTH, placeholder=" ...") + '"'
        for i in list(indices)[:QUOTED_STEPS]
    )
    rest = len(indices) - QUOTED_STEPS
    return quoted + (f" (and {rest} more)" if rest > 0 else "")


@dataclass(frozen=True)
class RetryPrompt:
    path: str  # prompts/polish.yaml, whose `retry` section holds the templates

    def _templates(self) -> dict:
        data = load_yaml(self.path)
        retry = data.get("retry")
        missing = [
            k
            for k in ("user", "steps", "answer_missing", "answer_wrong", "backtracks", "cut")
            if not isinstance(retry, dict) or k not in retry
        ]
        if missing:
            raise ValueError(f"prompt file {self.path}: missing key retry.{missing[0]!r}")
        return retry

    def feedback(
        self,
        guard: GuardResult,
        steps: list[str],
        answer: str,
        markers: list[str],
        cut_at: int | None = None,
    ) -> str:
        """One line per failed check: the lost steps quoted, the answer to box, the markers that
        count; cut_at is the budget a rewrite ran past."""
        t = self._templates()
        lines = []
        if cut_at is not None:
            lines.append(fill(t["cut"], budget=str(cut_at)))
        if guard.answer in ("missing", "wrong"):
            lines.append(fill(t[f"answer_{guard.answer}"], answer=answer))
        if guard.missing:
            lines.append(fill(t["steps"], n=str(len(guard.missing)), steps=quote_steps(steps, guard.missing)))
        if guard.markers_found < guard.markers_needed:
            lines.append(
                fill(
                    t["backtracks"],
                    found=str(guard.markers_found),
                    needed=str(guard.markers_needed),
                    markers=", ".join(f'"{m}"' for m in markers),
                )
            )
        if guard.echoed and "echo" in t:  # optional: older prompt files lack it
            lines.append(fill(t["echo"], line=guard.echoed[0]))
        return "\n".join(lines)

    def messages(self, problem: str, thought: str, feedback: str) -> list[dict]:
        """The first attempt's system turn, and a user turn that carries the feedback."""
        user = fill(self._templates()["user"], problem=problem, thought=thought, feedback=feedback)
        return [
            {"role": "system", "content": load_yaml(self.path)["system"]},
            {"role": "user", "content": user},
        ]
