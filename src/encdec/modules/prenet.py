"""Tacotron's pre-net (Wang et al. 2017; Shen et al. 2018): the previous spectrogram frame
through ReLU layers with dropout, where a text decoder has its token embedding.

Its dropout stays on at inference (``dropout_at_inference``, as Tacotron 2 does): the noise keeps
the decoder from leaning on its own previous frame, so it listens to the text through the
attention instead. Decoders call it like an embedding: ``embedding_dim`` is its output size.
"""

import torch
import torch.nn.functional as F
from torch import nn


class PreNet(nn.Module):
    def __init__(
        self,
        n_mels: int,
        dim: int = 256,
        num_layers: int = 2,
        dropout: float = 0.5,
        dropout_at_inference: bool = True,
    ) -> None:
        super().__init__()
        sizes = [n_mels] + [dim] * num_layers
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.dropout, self.dropout_at_inference = dropout, dropout_at_inference
        self.embedding_dim = dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (..., M) -> (..., dim)
        x = frames
        on = self.training or self.dropout_at_inference
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.dropout, training=on)
        return x
