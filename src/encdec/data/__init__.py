"""Data: tokenization, length-bucketed batching, translation corpora and SCAN."""
