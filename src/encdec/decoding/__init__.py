"""Greedy and beam search over the step interface that every network implements."""
