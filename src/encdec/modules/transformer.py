"""Transformer encoder and decoder (Vaswani et al., 2017) on scaled-dot-product attention.

Layers are pre-norm (``norm_first=True``, LayerNorm before each sublayer and once after the
stack) or post-norm (the original: LayerNorm after each residual). The decoder runs either
over a whole target prefix (teacher forcing, causal mask) or one step at a time with cached
self-attention keys/values; both give the same outputs.
"""

from dataclasses import dataclass

import torch
from torch import nn

from encdec.modules.attention import MultiHeadAttention
from encdec.modules.dropout import Dropout

KeysValues = tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, H, S, D/H) each


def padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, S) True = token  ->  SDPA boolean mask (B, 1, 1, S), True = may attend."""
    return mask[:, None, None, :]


@dataclass
class TransformerMemory:
    """The encoded source, with each decoder layer's cross-attention keys/values computed once."""

    states: torch.Tensor  # (B, S, D)
    mask: torch.Tensor  # (B, S) True = token
    cross_kv: list[KeysValues]  # one per decoder layer

    def reorder(self, index: torch.Tensor) -> "TransformerMemory":
        return TransformerMemory(
            self.states.index_select(0, index),
            self.mask.index_select(0, index),
            [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross_kv],
        )


@dataclass
class TransformerState:
    """Cached self-attention keys/values of every decoder layer for the steps decoded so far."""

    self_kv: list[KeysValues]  # one per layer, (B, H, t, D/H) each
    length: int  # t: number of target positions decoded

    def reorder(self, index: torch.Tensor) -> "TransformerState":
        kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.self_kv]
        return TransformerState(kv, self.length)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, ff_dim), nn.ReLU(), Dropout(dropout), nn.Linear(ff_dim, dim)
        )


class Residual(nn.Module):
    """x + dropout(sublayer(x)) with LayerNorm before the sublayer (pre-norm) or after the sum."""

    def __init__(self, dim: int, dropout: float, norm_first: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(dim, num_heads, attention_dropout)
        self.feed_forward = FeedForward(dim, ff_dim, dropout)
        self.attention_residual = Residual(dim, dropout, norm_first)
        self.feed_forward_residual = Residual(dim, dropout, norm_first)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, S, D); mask: (B, 1, 1, S)
        def attend(h: torch.Tensor) -> torch.Tensor:
            return self.self_attention(h, *self.self_attention.project_kv(h), mask=mask)

        x = self.attention_residual(x, attend)
        return self.feed_forward_residual(x, self.feed_forward)


class DecoderLayer(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(dim, num_heads, attention_dropout)
        self.cross_attention = MultiHeadAttention(dim, num_heads, attention_dropout)
        self.feed_forward = FeedForward(dim, ff_dim, dropout)
        self.self_residual = Residual(dim, dropout, norm_first)
        self.cross_residual = Residual(dim, dropout, norm_first)
        self.feed_forward_residual = Residual(dim, dropout, norm_first)

    def forward(
        self,
        x: torch.Tensor,
        cross_kv: KeysValues,
        memory_mask: torch.Tensor,
        cache: KeysValues | None = None,
    ) -> tuple[torch.Tensor, KeysValues]:
        """x: (B, T, D). With ``cache`` (keys/values of the previous positions) x holds only the
        new positions and attends to cache + itself; without it, x is the whole prefix, causally
        masked. Returns the output and the keys/values of all positions so far."""
        kv: KeysValues = (x.new_empty(0), x.new_empty(0))

        def attend_self(h: torch.Tensor) -> torch.Tensor:
            nonlocal kv
            keys, values = self.self_attention.project_kv(h)
            if cache is not None:
                keys, values = torch.cat([cache[0], keys], 2), torch.cat([cache[1], values], 2)
            kv = (keys, values)
            causal = cache is None and h.size(1) > 1
            return self.self_attention(h, keys, values, is_causal=causal)

        x = self.self_residual(x, attend_self)
        x = self.cross_residual(x, lambda h: self.cross_attention(h, *cross_kv, mask=memory_mask))
        return self.feed_forward_residual(x, self.feed_forward), kv


class LayerStack(nn.Module):
    """Embedding + positions + dropout, ``num_layers`` layers, and the final pre-norm LayerNorm."""

    layer_class: type[nn.Module]

    def __init__(
        self,
        embedding: nn.Module,
        positions: nn.Module,
        num_layers: int,
        dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_first: bool,
    ) -> None:
        super().__init__()
        self.embedding, self.positions = embedding, positions
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList(
            self.layer_class(dim, num_heads, ff_dim, dropout, attention_dropout, norm_first)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        # tokens: (B, T) at positions offset.. -> (B, T, D)
        return self.dropout(self.embedding(tokens) + self.positions(tokens.size(1), offset))


class TransformerEncoder(LayerStack):
    layer_class = EncoderLayer

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        # src: (B, S), src_mask: (B, S) -> (B, S, D)
        x = self.embed(src)
        mask = padding_mask(src_mask)
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_norm(x)


class TransformerDecoder(LayerStack):
    layer_class = DecoderLayer

    def cross_keys_values(self, states: torch.Tensor) -> list[KeysValues]:
        return [layer.cross_attention.project_kv(states) for layer in self.layers]

    def forward(
        self, tgt_in: torch.Tensor, memory: TransformerMemory, state: TransformerState | None = None
    ) -> tuple[torch.Tensor, TransformerState]:
        # tgt_in: (B, T) new target positions -> features (B, T, D), state covering all positions
        offset = 0 if state is None else state.length
        x = self.embed(tgt_in, offset)
        mask = padding_mask(memory.mask)
        new_kv = []
        for i, layer in enumerate(self.layers):
            cache = None if state is None else state.self_kv[i]
            x, kv = layer(x, memory.cross_kv[i], mask, cache)
            new_kv.append(kv)
        return self.final_norm(x), TransformerState(new_kv, offset + tgt_in.size(1))
