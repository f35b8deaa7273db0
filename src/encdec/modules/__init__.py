"""Plain nn.Module components (no Lightning): embeddings, attention, RNN, Transformer parts."""
