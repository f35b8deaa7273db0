"""Plain ``nn.Module`` components (no Lightning): embeddings, attention, RNN and Transformer parts."""
