"""Progress lines in a log: one per interval, however rarely the stage reports."""

from __future__ import annotations

import logging
import time

from pipeline.progress import Progress


def test_lines_keep_their_interval_while_no_update_arrives(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        with Progress("trees", 4, "trees", interval_s=0.1) as progress:
            progress.update(nodes=3, tokens=50)
            time.sleep(0.55)  # a long engine call: no update for five intervals
            progress.update(done=1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 5, lines  # four or more from the timer, one at the end
    assert lines[0].startswith("trees: 0/4 trees finished, 3 nodes, 50 tokens")
    assert lines[-1].startswith("trees: 1/4 trees finished")
