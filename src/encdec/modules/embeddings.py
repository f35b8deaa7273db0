"""Token embeddings and position encodings."""

import math

import torch
from torch import nn


class TokenEmbedding(nn.Embedding):
    """Token embedding, optionally scaled by sqrt(dim) as in Vaswani et al. (2017)."""

    def __init__(self, vocab_size: int, dim: int, padding_idx: int, scale: bool = False) -> None:
        super().__init__(vocab_size, dim, padding_idx=padding_idx)
        self.scale = math.sqrt(dim) if scale else 1.0
        nn.init.normal_(self.weight, mean=0.0, std=dim**-0.5 if scale else 1.0)
        with torch.no_grad():
            self.weight[padding_idx].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (B, T) -> (B, T, dim)
        return super().forward(tokens) * self.scale


class SinusoidalPositions(nn.Module):
    """Fixed sine/cosine position encodings; ``forward(length, offset)`` gives (length, dim),
    ``at(positions)`` the encodings of per-row positions (B, T) -> (B, T, dim)."""

    def __init__(self, dim: int, max_len: int = 1024) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)  # (max_len, 1)
        frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))  # (dim/2,)
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        if offset + length > self.table.size(0):
            raise ValueError(
                f"sequence of length {offset + length} exceeds max_len {self.table.size(0)}"
            )
        return self.table[offset : offset + length]

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        # positions: (B, T) indices, each row its own -> (B, T, dim)
        check_range(positions, self.table.size(0))
        return self.table[positions]


class LearnedPositions(nn.Module):
    """Trained position embeddings; ``forward(length, offset)`` gives (length, dim),
    ``at(positions)`` those of per-row positions (B, T) -> (B, T, dim)."""

    def __init__(self, dim: int, max_len: int = 1024) -> None:
        super().__init__()
        self.table = nn.Embedding(max_len, dim)
        nn.init.normal_(self.table.weight, mean=0.0, std=dim**-0.5)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        if offset + length > self.table.num_embeddings:
            raise ValueError(
                f"sequence of length {offset + length} exceeds max_len {self.table.num_embeddings}"
            )
        positions = torch.arange(offset, offset + length, device=self.table.weight.device)
        return self.table(positions)

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        # positions: (B, T) indices, each row its own -> (B, T, dim)
        check_range(positions, self.table.num_embeddings)
        return self.table(positions)


def check_range(positions: torch.Tensor, max_len: int) -> None:
    if positions.numel() and int(positions.max()) >= max_len:
        raise ValueError(f"sequence of length {int(positions.max()) + 1} exceeds max_len {max_len}")


def build_positions(kind: str, dim: int, max_len: int) -> nn.Module:
    """``kind`` is ``sinusoidal`` or ``learned``."""
    if kind == "sinusoidal":
        return SinusoidalPositions(dim, max_len)
    if kind == "learned":
        return LearnedPositions(dim, max_len)
    raise ValueError(f"unknown positions '{kind}'; choose sinusoidal or learned")
