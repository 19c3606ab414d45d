"""The tree search: grow on-policy reasoning trees, every sibling group on its own.

A node's w children are judged as soon as they are sampled, and each kept child is expanded as soon
as its siblings are judged (pruning compares siblings), whatever other nodes and trees are doing.
All of it runs on one event loop over continuously batching engines (vLLM stepped in-process, or an
endpoint with max_concurrency calls in flight), so the engine's batch fills with whatever is ready
and a policy and a judge on different engines work at once.

The trees do not depend on the order calls finish in: seeds come from a node's place in its tree,
not from when it was made, and node ids are given at the end, level by level, parents first and
siblings in sampling order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from pipeline.answers import NO_ANSWER, AnswerChecker, extract_final_answer, verdicts_async
from pipeline.answers.judge import AnswerJudge, JudgeItem
from pipeline.answers.reading import Verdict
from pipeline.config import Config
from pipeline.engines import Completion, Engine, Request
from pipeline.engines.base import generate_async
from pipeline.engines.seeds import request_seed
from pipeline.progress import Progress
from pipeline.prompts import PolicyPrompt
from pipeline.scorers.base import Scorer, StepScore, StepToScore, score_async
from trees.graph import shape_stats
from trees.model import ROOT_ID, Node, Tree, trees_from_nodes
from trees.values import AGREEMENT_KEYS, agreement, assign_tree_values

log = logging.getLogger(__name__)


@dataclass
class _Problem:
    """One tree while it grows. Until `number` runs, a node's id is its index in `nodes`."""

    problem_id: str
    problem: str
    answer: str
    nodes: list[Node] = field(default_factory=list)
    # A node's address: "0" for the root, then ".k" for its k-th sample at each level ("0.2.1").
    addresses: list[str] = field(default_factory=list)

    def add(self, node: Node, address: str) -> Node:
        node.node_id = len(self.nodes)
        self.nodes.append(node)
        self.addresses.append(address)
        return node

    def steps_to(self, node: Node) -> list[str]:
        steps = []
        while not node.is_root:
            steps.append(node.step)
            node = self.nodes[node.parent_id]
        return steps[::-1]

    def number(self) -> list[Node]:
        """Final ids, the same whatever order the calls finished in: level by level, children of
        lower-numbered parents first, siblings in sampling order."""
        new = {ROOT_ID: ROOT_ID}
        sample = [int(a.rsplit(".", 1)[-1]) for a in self.addresses]
        by_depth: dict[int, list[int]] = {}
        for i in range(1, len(self.nodes)):
            by_depth.setdefault(self.nodes[i].depth, []).append(i)
        for depth in sorted(by_depth):
            for i in sorted(by_depth[depth], key=lambda i: (new[self.nodes[i].parent_id], sample[i])):
                new[i] = len(new)
        for i, node in enumerate(self.nodes):
            node.node_id = new[i]
            if not node.is_root:
                node.parent_id = new[node.parent_id]
        return sorted(self.nodes, key=lambda n: n.node_id)


class TreeBuilder:
    def __init__(
        self,
        cfg: Config,
        policy: Engine,
        scorer: Scorer,
        checker: AnswerChecker,
        annotators: tuple[Scorer, ...] = (),
        judge: AnswerJudge | None = None,
    ):
        self.cfg = cfg
        self.policy = policy
        self.scorer = scorer
        self.annotators = annotators
        self.checker = checker
        self.judge = judge
        self.prompt = PolicyPrompt(cfg.policy.prompt)
        self.counts: Counter = Counter()
        self.scorer_problems: Counter = Counter()  # why scorer outputs were not clean, by reason
        self._failed = False

    async def guarded(self, call):
        """Await an engine or scorer call; once one has raised, start no other, so a crash stops
        the stage with only the calls already in flight paid for (the cache keeps the answered)."""
        if self._failed:
            call.close()
            raise RuntimeError("stopped: another engine call failed")
        try:
            return await call
        except BaseException:
            self._failed = True
            raise

    def build(self, problems: list[dict]) -> list[Node]:
        return asyncio.run(self.abuild(problems))

    async def abuild(self, problems: list[dict]) -> list[Node]:
        probs = [_Problem(p["problem_id"], p["problem"], p["answer"]) for p in problems]
        for pr in probs:
            pr.add(Node(pr.problem_id, ROOT_ID, -1, 0, pr.problem), "0")
        with Progress("trees", len(probs), "trees") as progress:
            await self.grow_all(probs, progress)
        return self.finish(probs)

    async def grow_all(self, probs: list[_Problem], progress: Progress) -> None:
        """Every tree at once; a benchmark's level-synchronous baseline overrides this."""

        async def tree(prob: _Problem) -> None:
            await self._grow(prob, prob.nodes[ROOT_ID], progress)
            progress.update(done=1)

        await asyncio.gather(*(tree(pr) for pr in probs))

    async def _grow(self, prob: _Problem, parent: Node, progress: Progress) -> None:
        (completions,) = await self.guarded(generate_async(self.policy, [self.policy_request(prob, parent)]))
        children = self.children(prob, parent, completions)
        tokens = await self.judge_group(prob, children)
        self.prune(children)
        progress.update(nodes=len(children), tokens=tokens + sum(n.tokens for n in children))
        await asyncio.gather(
            *(self._grow(prob, c, progress) for c in children if c.kept and not c.is_terminal)
        )

    def finish(self, probs: list[_Problem]) -> list[Node]:
        nodes = []
        for pr in probs:
            numbered = pr.number()
            assign_tree_values(Tree(pr.problem_id, numbered))
            nodes += numbered
        return nodes

    def policy_request(self, prob: _Problem, node: Node) -> Request:
        p = self.cfg.policy
        return Request.chat(
            self.prompt.messages(prob.problem, prob.steps_to(node), p.step_delimiter),
            n=p.width,
            max_tokens=p.max_step_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=(p.step_delimiter,),
            seed=request_seed(self.cfg.seed, prob.problem_id, prob.addresses[node.node_id]),
            continue_final=True,
        )

    def children(self, prob: _Problem, parent: Node, completions: list[Completion]) -> list[Node]:
        """The parent's w samples as nodes; failed, empty and repeated ones are pruned at once."""
        self.counts["policy_calls"] += 1
        depth = parent.depth + 1
        seen: set[str] = set()
        created = []
        for k, comp in enumerate(completions):
            self.counts["policy_tokens"] += comp.tokens
            step = comp.text.strip()
            node = Node(
                prob.problem_id, -1, parent.node_id, depth, step, tokens=comp.tokens, model=self.policy.label
            )
            if comp.finish_reason == "error":
                node.kept, node.prune_reason = False, f"policy call failed: {comp.error}"
            elif not step:
                node.kept, node.prune_reason = False, "empty step"
            elif step in seen:
                node.kept, node.prune_reason = False, "duplicate of a sibling"
            else:
                seen.add(step)
                # A model that closes its turn has finished its solution, answer or not.
                ends = comp.ended or depth >= self.cfg.policy.max_depth
                # Only the step that ends a solution may state its answer without \boxed{}.
                node.answer = extract_final_answer(step, self.cfg.answer_check.unboxed and ends)
                node.is_terminal = node.answer is not None or ends
            created.append(prob.add(node, f"{prob.addresses[parent.node_id]}.{k}"))
        return created

    async def judge_group(self, prob: _Problem, children: list[Node]) -> int:
        """Score the unpruned siblings, with every annotator, and check the terminal ones' answers,
        all at once; results are applied in one fixed order. Returns the tokens the judges made."""
        todo = [n for n in children if not n.prune_reason]
        steps = tuple(prob.steps_to(prob.nodes[children[0].parent_id])) if children else ()
        items = [
            StepToScore(
                prob.problem,
                prob.answer,
                steps,
                n.step,
                seed=request_seed(self.cfg.seed + 1, prob.problem_id, prob.addresses[n.node_id]),
            )
            for n in todo
        ]
        judges = (self.scorer, *self.annotators) if items else ()
        checked, *scored = await asyncio.gather(
            self._check_answers(prob, children), *(self.guarded(score_async(j, items)) for j in judges)
        )
        tokens = 0
        if scored:
            (scores, scorer_tokens), *annotated = scored
            self._apply_scores(todo, scores)
            self.counts["scorer_calls"] += 1
            self.counts["scorer_tokens"] += scorer_tokens
            tokens += scorer_tokens
            for annotator, (scores, annotator_tokens) in zip(self.annotators, annotated):
                self.counts["annotator_tokens"] += annotator_tokens
                tokens += annotator_tokens
                for node, sc in zip(todo, scores):
                    node.annotations.append(
                        {
                            "scorer": annotator.name,
                            "verdict": sc.verdict,
                            "score": sc.score,
                            "rationale": sc.rationale,
                        }
                    )
        self._apply_checks(children, checked)
        return tokens

    def _apply_scores(self, nodes: list[Node], scores: list[StepScore]) -> None:
        for node, sc in zip(nodes, scores):
            node.verdict, node.rationale, node.score, node.scorer = (
                sc.verdict,
                sc.rationale,
                sc.score,
                self.scorer.name,
            )
            if sc.problem:
                self.scorer_problems[sc.problem] += 1
                if sc.score is None:
                    node.prune_reason = f"no score: {sc.problem}"

    async def _check_answers(self, prob: _Problem, children: list[Node]) -> list[tuple[Node, Verdict]]:
        """The answered terminal children, each with its verdict."""
        answered = [n for n in children if n.is_terminal and n.answer is not None]
        pairs = [(prob.answer, n.answer) for n in answered]
        verdicts = await verdicts_async(self.checker, pairs)
        if self.judge is not None and answered:
            items = [JudgeItem(prob.problem, prob.answer, n.answer) for n in answered]
            verdicts = await self.guarded(asyncio.to_thread(self.judge.settle, items, verdicts))
        return list(zip(answered, verdicts))

    @staticmethod
    def _apply_checks(children: list[Node], checked: list[tuple[Node, Verdict]]) -> None:
        for node, v in checked:
            node.answer_correct, node.answer_checker = v.correct is True, v.checker
            if v.reason:  # why it is undecided, or the judge's rationale: shown with the node
                verdict = {True: "correct", False: "incorrect", None: "unknown"}[v.correct]
                node.annotations.append(
                    {"scorer": "answer-check", "verdict": verdict, "score": None, "rationale": v.reason}
                )
        for node in children:
            if node.is_terminal and node.answer is None:
                node.answer_correct, node.answer_checker = False, NO_ANSWER

    def prune(self, siblings: list[Node]) -> None:
        """Keep at most K of one node's children: those judged correct (critic, the paper's rule),
        or the K best scores (PRM, rollouts); ties keep sampling order."""
        k = self.cfg.pruning.keep
        nodes = []
        for node in siblings:
            if node.prune_reason:
                node.kept = False
            else:
                nodes.append(node)
        if self.scorer.rule == "verdict":
            ranked = [n for n in nodes if n.verdict == "correct"]
            for n in nodes:
                if n.verdict != "correct":
                    n.kept, n.prune_reason = False, "judged incorrect"
        else:
            ranked = sorted(nodes, key=lambda n: -n.score)
        for n in ranked[k:]:
            n.kept, n.prune_reason = False, f"over the keep limit K={k}"


def tree_stats(nodes: list[Node]) -> dict:
    generated = [n for n in nodes if not n.is_root]
    terminal = [n for n in generated if n.is_terminal]
    correct = [n for n in terminal if n.answer_correct]
    problems = {n.problem_id for n in nodes}
    agree: Counter = Counter()
    for tree in trees_from_nodes(nodes):
        agree.update(agreement(tree))
    return {
        "trees": len(problems),
        "nodes_generated": len(generated),
        "nodes_kept": sum(n.kept for n in generated),
        "nodes_pruned": sum(not n.kept for n in generated),
        "prune_reasons": dict(Counter(n.prune_reason for n in generated if not n.kept)),
        "verdicts": dict(Counter(n.verdict for n in generated)),
        "terminal_nodes": len(terminal),
        "answered_leaves": sum(n.answer is not None for n in terminal),
        "correct_leaves": len(correct),
        "trees_with_correct_leaf": len({n.problem_id for n in correct}),
        "answer_checkers": dict(Counter(n.answer_checker for n in terminal)),
        # The pruning scorer's verdicts against the tree's own values (trees/values.py).
        "tree_value_agreement": {k: agree[k] for k in AGREEMENT_KEYS},
        "shape": shape_stats(nodes),
    }
