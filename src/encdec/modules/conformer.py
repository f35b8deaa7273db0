"""Conformer encoder (Gulati et al., 2020): every block pairs self-attention (global context)
with a depthwise convolution (local patterns such as formant transitions), between two
half-step feed-forward modules (Macaron-Net):

    x = x + 1/2 FF(x);  x = x + MHSA(x);  x = x + Conv(x);  x = x + 1/2 FF(x);  x = LayerNorm(x)

each sublayer pre-normed, as in ESPnet's and NeMo's speech encoders. Two choices differ from
the paper, both so that a frame's output depends only on its own clip:

- positions are added once at the input (sinusoidal or learned, as in the Transformer encoder)
  instead of relative-position self-attention, so attention runs on SDPA;
- the convolution module normalizes with LayerNorm where the paper has BatchNorm, whose
  statistics would mix the clips of a batch and their padding (NeMo's ``conv_norm_type``
  offers the same); padded frames are zeroed before the depthwise convolution reads them.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from encdec.modules.attention import MultiHeadAttention
from encdec.modules.dropout import Dropout
from encdec.modules.embeddings import build_positions
from encdec.modules.interface import Encoded
from encdec.modules.transformer import FeedForward, Residual, padding_mask


class ConvolutionModule(nn.Module):
    """Pointwise conv (2 D) -> GLU -> depthwise conv over time -> LayerNorm -> Swish ->
    pointwise conv. Pointwise convolutions over (B, S, D) are linear layers."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd (centred on each frame)")
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, S, D), mask: (B, S) True = frame -> (B, S, D)
        h = F.glu(self.pointwise_in(x), dim=-1)
        h = h.masked_fill(~mask.unsqueeze(-1), 0.0)  # padding never reaches a real frame
        h = self.depthwise(h.transpose(1, 2)).transpose(1, 2)
        return self.pointwise_out(F.silu(self.norm(h)))


class ConformerBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        ff_dim: int,
        kernel_size: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.feed_forward_in = FeedForward(dim, ff_dim, dropout, nn.SiLU)
        self.self_attention = MultiHeadAttention(dim, num_heads, attention_dropout)
        self.convolution = ConvolutionModule(dim, kernel_size)
        self.feed_forward_out = FeedForward(dim, ff_dim, dropout, nn.SiLU)
        self.feed_forward_in_residual = Residual(dim, dropout, norm_first=True)
        self.attention_residual = Residual(dim, dropout, norm_first=True)
        self.convolution_residual = Residual(dim, dropout, norm_first=True)
        self.feed_forward_out_residual = Residual(dim, dropout, norm_first=True)
        self.final_norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        # x: (B, S, D); mask: (B, S); attention_mask: (B, 1, 1, S)
        def attend(h: torch.Tensor) -> torch.Tensor:
            return self.self_attention(h, *self.self_attention.project_kv(h), mask=attention_mask)

        x = self.feed_forward_in_residual(x, lambda h: 0.5 * self.feed_forward_in(h))
        x = self.attention_residual(x, attend)
        x = self.convolution_residual(x, lambda h: self.convolution(h, mask))
        x = self.feed_forward_out_residual(x, lambda h: 0.5 * self.feed_forward_out(h))
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    """Conformer blocks over frames (or any vectors of ``input_size``, projected to ``dim``
    where the sizes differ)."""

    final_states = False

    def __init__(
        self,
        input_size: int,
        dim: int = 144,
        num_heads: int = 4,
        ff_dim: int = 576,
        num_layers: int = 4,
        kernel_size: int = 15,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_positions: int = 3000,
    ) -> None:
        super().__init__()
        self.input_projection = nn.Linear(input_size, dim) if input_size != dim else None
        self.positions = build_positions(positions, dim, max_positions)
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList(
            ConformerBlock(dim, num_heads, ff_dim, kernel_size, dropout, attention_dropout)
            for _ in range(num_layers)
        )
        self.output_size = dim

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> Encoded:
        # embedded: (B, S, E), mask: (B, S) -> states (B, S, D)
        x = embedded if self.input_projection is None else self.input_projection(embedded)
        x = self.dropout(x + self.positions(x.size(1), 0))
        attention_mask = padding_mask(mask)
        for layer in self.layers:
            x = layer(x, mask, attention_mask)
        return Encoded(x, mask)
