"""Transformer encoder and decoder (Vaswani et al., 2017) on scaled-dot-product attention.

Layers are pre-norm (``norm_first=True``, LayerNorm before each sublayer and once after the
stack) or post-norm (the original: LayerNorm after each residual). The decoder runs either
over a whole target prefix (teacher forcing, causal mask) or one step at a time with cached
self-attention keys/values; both give the same outputs.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from encdec.modules.attention import MultiHeadAttention
from encdec.modules.dropout import Dropout
from encdec.modules.embeddings import build_positions
from encdec.modules.interface import Decoder, Encoded

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
    """Linear -> activation (ReLU; the Conformer's Swish) -> dropout -> Linear."""

    def __init__(
        self, dim: int, ff_dim: int, dropout: float, activation: type[nn.Module] = nn.ReLU
    ) -> None:
        super().__init__(
            nn.Linear(dim, ff_dim), activation(), Dropout(dropout), nn.Linear(ff_dim, dim)
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
    """Inputs of ``input_size`` projected to ``dim`` where the sizes differ, positions +
    dropout, ``num_layers`` layers, and the final pre-norm LayerNorm."""

    layer_class: type[nn.Module]

    def __init__(
        self,
        input_size: int,
        dim: int,
        num_heads: int,
        ff_dim: int,
        num_layers: int,
        dropout: float,
        attention_dropout: float,
        positions: Literal["sinusoidal", "learned"],
        max_positions: int,
        norm_first: bool,
    ) -> None:
        super().__init__()
        self.positions = build_positions(positions, dim, max_positions)
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList(
            self.layer_class(dim, num_heads, ff_dim, dropout, attention_dropout, norm_first)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.input_projection = nn.Linear(input_size, dim) if input_size != dim else None

    def prepare_inputs(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        # x: (B, T, E) at positions offset.. -> (B, T, D)
        if self.input_projection is not None:
            x = self.input_projection(x)
        return self.dropout(x + self.positions(x.size(1), offset))


class TransformerEncoder(LayerStack):
    """Self-attention layers over embedded tokens (or any vectors of ``input_size``, projected
    to ``dim`` where the sizes differ)."""

    layer_class = EncoderLayer
    final_states = False

    def __init__(
        self,
        input_size: int,
        dim: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        num_layers: int = 3,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_positions: int = 1024,
        norm_first: bool = True,
    ) -> None:
        super().__init__(
            input_size, dim, num_heads, ff_dim, num_layers, dropout, attention_dropout,
            positions, max_positions, norm_first,
        )  # fmt: skip
        self.output_size = dim

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> Encoded:
        # embedded: (B, S, E), mask: (B, S) -> states (B, S, D)
        x = self.prepare_inputs(embedded)
        attention_mask = padding_mask(mask)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return Encoded(self.final_norm(x), mask)


class TransformerDecoder(LayerStack, Decoder):
    """Causal self-attention over the target prefix (KV-cached when stepping) and
    cross-attention over the encoder states, projected to ``dim`` (Linear + LayerNorm) where
    ``project_memory`` says so (null: where the encoder's size differs). Target embeddings of
    another size than ``dim`` are projected to it. ``guided_heads`` > 0: teacher forcing also
    returns the mean of the last layer's first ``guided_heads`` cross-attention heads, which a
    guided-attention loss pulls toward the diagonal (speech synthesis; the other heads stay
    free, as ESPnet's Transformer TTS guides some heads)."""

    layer_class = DecoderLayer

    def __init__(
        self,
        embedding: nn.Embedding,
        memory_size: int,
        memory_final: bool,
        dim: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        num_layers: int = 3,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_positions: int = 1024,
        norm_first: bool = True,
        project_memory: bool | None = None,
        guided_heads: int = 0,
    ) -> None:
        if not 0 <= guided_heads <= num_heads:
            raise ValueError(f"guided_heads {guided_heads} is not within 0..num_heads {num_heads}")
        project = memory_size != dim if project_memory is None else project_memory
        memory_projection = (
            nn.Sequential(nn.Linear(memory_size, dim), nn.LayerNorm(dim)) if project else None
        )
        LayerStack.__init__(
            self, embedding.embedding_dim, dim, num_heads, ff_dim, num_layers, dropout,
            attention_dropout, positions, max_positions, norm_first,
        )  # fmt: skip
        self.memory_projection = memory_projection
        self.embedding = embedding
        self.num_heads, self.dim = num_heads, dim
        self.guided_heads = guided_heads
        self.output_size = dim
        self.max_output_length = max_positions - 1  # BOS takes position 0

    def memory(self, encoded: Encoded) -> TransformerMemory:
        states = encoded.states  # (B, S, D_enc)
        if self.memory_projection is not None:
            states = self.memory_projection(states)  # (B, S, D)
        kv = [layer.cross_attention.project_kv(states) for layer in self.layers]
        return TransformerMemory(states, encoded.mask, kv)

    def init_state(self, memory: TransformerMemory) -> TransformerState:
        batch = memory.states.size(0)
        empty = memory.states.new_zeros(batch, self.num_heads, 0, self.dim // self.num_heads)
        return TransformerState([(empty, empty)] * len(self.layers), 0)

    def _run(
        self, tgt_in: torch.Tensor, memory: TransformerMemory, state: TransformerState | None
    ) -> tuple[torch.Tensor, TransformerState]:
        # tgt_in: (B, T) new target positions -> features (B, T, D), state covering all positions
        offset = 0 if state is None else state.length
        x = self.prepare_inputs(self.embedding(tgt_in), offset)  # (B, T, E) -> (B, T, D)
        mask = padding_mask(memory.mask)
        new_kv = []
        for i, layer in enumerate(self.layers):
            cache = None if state is None else state.self_kv[i]
            x, kv = layer(x, memory.cross_kv[i], mask, cache)
            new_kv.append(kv)
        return self.final_norm(x), TransformerState(new_kv, offset + tgt_in.size(1))

    def forward(
        self, tgt_in: torch.Tensor, memory: TransformerMemory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # tgt_in: (B, T) -> features (B, T, D), and with guided_heads the mean of the last
        # layer's first guided_heads cross-attention heads (B, T, S), for a loss to guide
        if not self.guided_heads:
            return self._run(tgt_in, memory, None)[0], None  # SDPA: no weights materialized
        cross_attention = self.layers[-1].cross_attention
        kept = cross_attention.keep_weights
        cross_attention.keep_weights = True
        try:
            features = self._run(tgt_in, memory, None)[0]
            weights = self._alignment(cross_attention.weights)
        finally:
            cross_attention.keep_weights = kept
            if not kept:
                cross_attention.weights = None
        return features, weights

    def step(
        self, prev_tokens: torch.Tensor, state: TransformerState, memory: TransformerMemory
    ) -> tuple[torch.Tensor, TransformerState, torch.Tensor | None]:
        # prev_tokens: (B,) -> features (B, D), state, attention (B, S) within returning_attention
        features, state = self._run(prev_tokens.unsqueeze(1), memory, state)
        cross_attention = self.layers[-1].cross_attention
        weights = None  # only within returning_attention(): the last layer's, heads averaged
        if cross_attention.keep_weights:
            weights = self._alignment(cross_attention.weights)[:, -1]  # (B, S)
        return features.squeeze(1), state, weights

    def _alignment(self, weights: torch.Tensor) -> torch.Tensor:
        # (B, H, T, S) -> (B, T, S): the mean of the guided heads (all heads where none is)
        return weights[:, : self.guided_heads or self.num_heads].mean(dim=1)

    @contextmanager
    def returning_attention(self) -> Iterator[None]:
        """Within: ``step`` also returns the last layer's cross-attention (B, S), averaged over
        its guided heads (all heads where none is guided), computed on an explicit path (SDPA
        elsewhere: training and search stay fast)."""
        cross_attention = self.layers[-1].cross_attention
        cross_attention.keep_weights = True
        try:
            yield
        finally:
            cross_attention.keep_weights, cross_attention.weights = False, None
