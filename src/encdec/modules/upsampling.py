"""Upsampling the source for a non-autoregressive CTC output (Libovický and Helcl, 2018): each
source vector becomes ``factor`` vectors (one linear projection, split), so that an encoder-only
model with a CTC head has at least as many positions as the output has tokens."""

from collections.abc import Callable

import torch
from torch import nn

from encdec.modules.interface import Encoded


class UpsampledEncoder(nn.Module):
    """``factor`` vectors per source vector, then ``encoder`` (a partial constructor given
    ``input_size``) over the longer sequence; right padding stays at the right."""

    def __init__(self, input_size: int, factor: int, encoder: Callable[..., nn.Module]) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"model.net.encoder.factor must be >= 1, got {factor}")
        self.factor = factor
        self.projection = nn.Linear(input_size, factor * input_size)
        self.encoder = encoder(input_size=input_size)
        self.output_size = self.encoder.output_size
        self.final_states = self.encoder.final_states

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> Encoded:
        # vectors: (B, S, E), mask: (B, S) -> encoded over (B, S * factor)
        batch, length, size = vectors.shape
        upsampled = self.projection(vectors).view(batch, length * self.factor, size)
        return self.encoder(upsampled, mask.repeat_interleave(self.factor, dim=1))
