"""The level-synchronous tree search the trees stage ran before it streamed, kept as a baseline.

A whole level of every tree goes to the policy at once; nothing moves on until every sibling group of
the level is judged. Same requests, seeds and pruning as the streaming search, so the same trees.
"""

from __future__ import annotations

import asyncio

from pipeline.engines.base import generate_async
from pipeline.progress import Progress
from pipeline.search.builder import TreeBuilder
from trees.model import ROOT_ID


class LevelSyncBuilder(TreeBuilder):
    async def grow_all(self, probs, progress: Progress) -> None:
        frontier = [(pr, pr.nodes[ROOT_ID]) for pr in probs]
        while frontier:
            requests = [self.policy_request(pr, node) for pr, node in frontier]
            outs = await self.guarded(generate_async(self.policy, requests))
            groups = [(pr, self.children(pr, node, comps)) for (pr, node), comps in zip(frontier, outs)]
            await asyncio.gather(*(self.judge_group(pr, children) for pr, children in groups))
            for _, children in groups:
                self.prune(children)
            progress.update(nodes=sum(len(children) for _, children in groups))
            frontier = [(pr, c) for pr, children in groups for c in children if c.kept and not c.is_terminal]
        progress.update(done=len(probs))
