"""The tree search the trees stage runs: on-policy sampling, judging and pruning, streamed."""
