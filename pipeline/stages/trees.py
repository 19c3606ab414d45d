"""Trees stage: grow on-policy reasoning trees level by level, judging and pruning every level.

Each level of all the shard's trees is one policy call and one scorer call, so the engine sees
batches as large as the shard allows instead of one node at a time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.answer_judge import AnswerJudge, JudgeItem
from pipeline.answers import NO_ANSWER, AnswerChecker, extract_final_answer
from pipeline.config import Config
from pipeline.engines import Engine, EnginePool, Request, cache_path
from pipeline.prompts import PolicyPrompt
from pipeline.scorers import SCORER_SECTION, make_scorer
from pipeline.scorers.base import Scorer, StepToScore
from pipeline.tables import NODE_SCHEMA, PROBLEM_SCHEMA, read_table, write_stats, write_table
from trees.model import ROOT_ID, Node, Tree, trees_from_nodes
from trees.values import AGREEMENT_KEYS, agreement, assign_tree_values

log = logging.getLogger(__name__)


def node_seed(seed: int, problem_id: str, node_id: int) -> int:
    """A sampling seed per node, independent of batch order. On vLLM's CPU kernels a request's text
    can still change with the batch it shares, so byte-identical reruns come from the response cache."""
    digest = hashlib.sha256(f"{seed}:{problem_id}:{node_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class _Problem:
    problem_id: str
    problem: str
    answer: str
    nodes: list[Node]

    def steps_to(self, node: Node) -> list[str]:
        steps = []
        while not node.is_root:
            steps.append(node.step)
            node = self.nodes[node.parent_id]
        return steps[::-1]


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

    def _policy_request(self, prob: _Problem, node: Node) -> Request:
        p = self.cfg.policy
        return Request.chat(
            self.prompt.messages(prob.problem, prob.steps_to(node), p.step_delimiter),
            n=p.width,
            max_tokens=p.max_step_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            stop=(p.step_delimiter,),
            seed=node_seed(self.cfg.seed, prob.problem_id, node.node_id),
            continue_final=True,
        )

    def _expand(self, frontier: list[tuple[_Problem, Node]], depth: int) -> list[tuple[_Problem, Node]]:
        """Sample w children for every frontier node in one policy call; returns the new nodes."""
        outs = self.policy.generate([self._policy_request(pr, n) for pr, n in frontier])
        self.counts["policy_calls"] += 1
        created = []
        for (prob, parent), completions in zip(frontier, outs):
            seen: set[str] = set()
            for comp in completions:
                self.counts["policy_tokens"] += comp.tokens
                step = comp.text.strip()
                node = Node(
                    prob.problem_id,
                    len(prob.nodes),
                    parent.node_id,
                    depth,
                    step,
                    tokens=comp.tokens,
                    model=self.policy.label,
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
                prob.nodes.append(node)
                created.append((prob, node))
        return created

    def _score(self, created: list[tuple[_Problem, Node]]) -> None:
        todo = [(pr, n) for pr, n in created if not n.prune_reason]
        if not todo:
            return
        items = [
            StepToScore(
                pr.problem,
                pr.answer,
                tuple(pr.steps_to(pr.nodes[n.parent_id])),
                n.step,
                seed=node_seed(self.cfg.seed + 1, pr.problem_id, n.node_id),
            )
            for pr, n in todo
        ]
        scores, tokens = self.scorer.score(items)
        self.counts["scorer_calls"] += 1
        self.counts["scorer_tokens"] += tokens
        for (_, node), sc in zip(todo, scores):
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
        for annotator in self.annotators:
            scores, tokens = annotator.score(items)
            self.counts["annotator_tokens"] += tokens
            for (_, node), sc in zip(todo, scores):
                node.annotations.append(
                    {
                        "scorer": annotator.name,
                        "verdict": sc.verdict,
                        "score": sc.score,
                        "rationale": sc.rationale,
                    }
                )

    def _check_answers(self, created: list[tuple[_Problem, Node]]) -> None:
        terminal = [(pr, n) for pr, n in created if n.is_terminal]
        answered = [(pr, n) for pr, n in terminal if n.answer is not None]
        verdicts = self.checker.verdicts([(pr.answer, n.answer) for pr, n in answered])
        if self.judge is not None:
            items = [JudgeItem(pr.problem, pr.answer, n.answer) for pr, n in answered]
            verdicts = self.judge.settle(items, verdicts)
        for (_, node), v in zip(answered, verdicts):
            node.answer_correct, node.answer_checker = v.correct is True, v.checker
            if v.reason:  # why it is undecided, or the judge's rationale: shown with the node
                verdict = {True: "correct", False: "incorrect", None: "unknown"}[v.correct]
                node.annotations.append(
                    {"scorer": "answer-check", "verdict": verdict, "score": None, "rationale": v.reason}
                )
        for _, node in terminal:
            if node.answer is None:
                node.answer_correct, node.answer_checker = False, NO_ANSWER

    def _prune(self, created: list[tuple[_Problem, Node]]) -> None:
        """Keep at most K children per node: those judged correct (critic, the paper's rule), or the
        K best scores (PRM, rollouts); ties keep sampling order."""
        k = self.cfg.pruning.keep
        siblings: dict[tuple[str, int], list[Node]] = {}
        for prob, node in created:
            if node.prune_reason:
                node.kept = False
            else:
                siblings.setdefault((prob.problem_id, node.parent_id), []).append(node)
        for nodes in siblings.values():
            if self.scorer.rule == "verdict":
                ranked = [n for n in nodes if n.verdict == "correct"]
                for n in nodes:
                    if n.verdict != "correct":
                        n.kept, n.prune_reason = False, "judged incorrect"
            else:
                ranked = sorted(nodes, key=lambda n: -n.score)
            for n in ranked[k:]:
                n.kept, n.prune_reason = False, f"over the keep limit K={k}"

    def build(self, problems: list[dict]) -> list[Node]:
        probs = [
            _Problem(
                p["problem_id"],
                p["problem"],
                p["answer"],
                [Node(p["problem_id"], ROOT_ID, -1, 0, p["problem"])],
            )
            for p in problems
        ]
        frontier = [(pr, pr.nodes[ROOT_ID]) for pr in probs]
        for depth in range(1, self.cfg.policy.max_depth + 1):
            if not frontier:
                break
            start = time.perf_counter()
            created = self._expand(frontier, depth)
            self._score(created)
            self._check_answers(created)
            self._prune(created)
            self.counts["levels"] += 1
            log.info(
                "depth %d: %d open nodes -> %d children, %d kept, %d correct answers (%.1f s)",
                depth,
                len(frontier),
                len(created),
                sum(n.kept for _, n in created),
                sum(bool(n.answer_correct) for _, n in created),
                time.perf_counter() - start,
            )
            frontier = [(pr, n) for pr, n in created if n.kept and not n.is_terminal]
        for pr in probs:
            assign_tree_values(Tree(pr.problem_id, pr.nodes))
        return [n for pr in probs for n in pr.nodes]


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
    }


def run_trees(cfg: Config, problems_path: str | Path, out_path: str | Path) -> dict:
    start = time.perf_counter()
    problems = read_table(problems_path, PROBLEM_SCHEMA).to_pylist()
    with (
        EnginePool(cfg.engines, cache_path(out_path)) as pool,
        AnswerChecker(cfg.answer_check.workers, cfg.answer_check.timeout_s) as checker,
    ):
        policy = pool.get(cfg.policy.engine)
        scorer = make_scorer(cfg.pruning.scorer, cfg, pool, checker)
        annotators = tuple(make_scorer(name, cfg, pool, checker) for name in cfg.annotate)
        judge_cfg = cfg.answer_check.judge
        judge = AnswerJudge(pool.get(judge_cfg.engine), judge_cfg) if judge_cfg else None
        builder = TreeBuilder(cfg, policy, scorer, checker, annotators, judge)
        nodes = builder.build(problems)
        roles = [SCORER_SECTION[name] for name in (cfg.pruning.scorer, *cfg.annotate)]
        judge_engines = [judge_cfg.engine] if judge_cfg else []
        engines = pool.stats([*cfg.engine_names("policy", *roles), *judge_engines])
    write_table([n.__dict__ for n in nodes], NODE_SCHEMA, out_path)
    wall = time.perf_counter() - start
    engine_s = sum(e["engine_s"] for e in engines.values())
    generated = sum(builder.counts[k] for k in ("policy_tokens", "scorer_tokens", "annotator_tokens"))
    generated += judge.counts["tokens"] if judge else 0
    stats = {
        **tree_stats(nodes),
        **dict(builder.counts),
        "scorer_problems": dict(builder.scorer_problems),
        **({"answer_judge": judge.stats()} if judge else {}),
        "engines": engines,
        "wall_s": round(wall, 3),
        "engine_s": round(engine_s, 3),
        "generated_tokens_per_s": round(generated / engine_s, 1) if engine_s else None,
    }
    write_stats(out_path, stats)
    return stats
