"""Decoder-only Transformers (GPT-style causal LM, prefix LM): one stack of self-attention layers
over ``source <sep> target``, the target's BOS being the separator.

Behind the step interface the source is a prefix the decoder runs its own layers over once:
``memory`` computes every layer's keys/values of the source positions (the prefill), and each
target position attends to them and, causally, to the target positions before it. The prefix
attends to itself bidirectionally (prefix LM; Raffel et al. 2020, Sec. 3.2.1) or causally
(``causal_prefix``: a causal LM over the whole sequence). Every row's target positions continue
from its own source length, so padding never shifts them.

With ``EmbeddedSource`` as the encoder the prefix is the embedded source tokens: a true
decoder-only model (the loss is the decoder's, on the target only). Any other encoder's states
can be the prefix too (an image grid, audio frames), projected to ``dim`` where sizes differ.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from encdec.modules.interface import Decoder, Encoded
from encdec.modules.transformer import (
    EncoderLayer,
    KeysValues,
    LayerStack,
    TransformerState,
    padding_mask,
)


class EmbeddedSource(nn.Module):
    """The encoder of a decoder-only model: the embedded source as it is, for the decoder's own
    layers to read as a prefix."""

    final_states = False

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.output_size = input_size

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> Encoded:
        return Encoded(embedded, mask)  # (B, S, E), (B, S)


@dataclass
class PrefixMemory:
    """The source prefix run through the stack once: each layer's keys/values over it."""

    prefix_kv: list[KeysValues]  # one per layer, (B, H, S, D/H) each
    mask: torch.Tensor  # (B, S) True = a real source position

    def reorder(self, index: torch.Tensor) -> "PrefixMemory":
        kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.prefix_kv]
        return PrefixMemory(kv, self.mask.index_select(0, index))


class DecoderOnlyLayer(EncoderLayer):
    """Self-attention over the keys/values of the positions before (``past``) and the new
    positions, then the feed-forward; returns the keys/values of all of them."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor, past: KeysValues | None
    ) -> tuple[torch.Tensor, KeysValues]:
        # x: (B, T, D) new positions; past: (B, H, P, D/H) each; mask: (B, 1, T | 1, P + T)
        kv: KeysValues = (x.new_empty(0), x.new_empty(0))

        def attend(h: torch.Tensor) -> torch.Tensor:
            nonlocal kv
            keys, values = self.self_attention.project_kv(h)
            if past is not None:
                keys, values = torch.cat([past[0], keys], 2), torch.cat([past[1], values], 2)
            kv = (keys, values)
            return self.self_attention(h, keys, values, mask=mask)

        x = self.attention_residual(x, attend)
        return self.feed_forward_residual(x, self.feed_forward), kv


def target_mask(prefix_mask: torch.Tensor, decoded: int, length: int) -> torch.Tensor:
    """What ``length`` new target positions may attend to, after ``decoded`` target positions:
    the real prefix positions, the decoded ones and, causally, each other:
    (B, 1, T, S + t + T)."""
    batch, device = prefix_mask.size(0), prefix_mask.device
    prefix = prefix_mask[:, None, None, :].expand(batch, 1, length, prefix_mask.size(1))
    before = torch.ones(batch, 1, length, decoded, dtype=torch.bool, device=device)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    return torch.cat([prefix, before, causal.expand(batch, 1, length, length)], dim=-1)


class DecoderOnlyTransformer(LayerStack, Decoder):
    """One pre-/post-norm Transformer stack over prefix and target (``EncoderLayer``s with a
    key/value cache). The prefix goes through the target's input projection where it has the
    embedding size (the embedded source), else through its own projection to ``dim``."""

    layer_class = DecoderOnlyLayer

    def __init__(
        self,
        embedding: nn.Embedding,
        memory_size: int,
        memory_final: bool,
        dim: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        num_layers: int = 6,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_positions: int = 1024,
        norm_first: bool = True,
        causal_prefix: bool = False,
    ) -> None:
        super().__init__(
            embedding.embedding_dim, dim, num_heads, ff_dim, num_layers, dropout,
            attention_dropout, positions, max_positions, norm_first,
        )  # fmt: skip
        self.embedding = embedding
        self.prefix_projection = (
            nn.Linear(memory_size, dim) if memory_size != embedding.embedding_dim else None
        )
        self.causal_prefix = causal_prefix
        self.output_size = dim
        self.max_output_length = max_positions - 1  # the prefix shares the positions: see `at`

    def _inputs(self, vectors: torch.Tensor, positions: torch.Tensor, prefix: bool) -> torch.Tensor:
        # vectors: (B, T, E) at positions (B, T) -> (B, T, D)
        if prefix and self.prefix_projection is not None:
            vectors = self.prefix_projection(vectors)
        elif self.input_projection is not None:
            vectors = self.input_projection(vectors)
        return self.dropout(vectors + self.positions.at(positions))

    def memory(self, encoded: Encoded) -> PrefixMemory:
        batch, length = encoded.mask.shape
        positions = torch.arange(length, device=encoded.mask.device).expand(batch, length)
        x = self._inputs(encoded.states, positions, prefix=True)  # (B, S, D)
        mask = padding_mask(encoded.mask)  # (B, 1, 1, S): the prefix sees all of itself
        if self.causal_prefix:
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            mask = mask & causal  # (B, 1, S, S)
        prefix_kv = []
        for layer in self.layers:
            x, kv = layer(x, mask, None)
            prefix_kv.append(kv)
        return PrefixMemory(prefix_kv, encoded.mask)

    def init_state(self, memory: PrefixMemory) -> TransformerState:
        return TransformerState(list(memory.prefix_kv), 0)  # the cache starts as the prefill

    def _run(
        self, tgt_in: torch.Tensor, memory: PrefixMemory, state: TransformerState
    ) -> tuple[torch.Tensor, TransformerState]:
        # tgt_in: (B, T) new target positions -> features (B, T, D), state covering all of them
        length = tgt_in.size(1)
        first = memory.mask.sum(1, keepdim=True) + state.length  # (B, 1): each row's next position
        positions = first + torch.arange(length, device=tgt_in.device)  # (B, T)
        x = self._inputs(self.embedding(tgt_in), positions, prefix=False)
        mask = target_mask(memory.mask, state.length, length)
        new_kv = []
        for layer, past in zip(self.layers, state.self_kv, strict=True):
            x, kv = layer(x, mask, past)
            new_kv.append(kv)
        return self.final_norm(x), TransformerState(new_kv, state.length + length)

    def forward(self, tgt_in: torch.Tensor, memory: PrefixMemory) -> tuple[torch.Tensor, None]:
        # tgt_in: (B, T) -> features (B, T, D); attention is not kept in training
        return self._run(tgt_in, memory, self.init_state(memory))[0], None

    def step(
        self, prev_tokens: torch.Tensor, state: TransformerState, memory: PrefixMemory
    ) -> tuple[torch.Tensor, TransformerState, torch.Tensor | None]:
        # prev_tokens: (B,) -> features (B, D), state, attention (B, S) within returning_attention
        features, state = self._run(prev_tokens.unsqueeze(1), memory, state)
        attention = self.layers[-1].self_attention
        weights = None  # only within returning_attention(): the last layer's, on the prefix
        if attention.keep_weights:
            prefix_length = memory.mask.size(1)
            weights = attention.weights[:, :, -1, :prefix_length].mean(dim=1)  # (B, S)
        return features.squeeze(1), state, weights

    @contextmanager
    def returning_attention(self) -> Iterator[None]:
        """Within: ``step`` also returns the last layer's attention on the prefix (B, S),
        averaged over heads (the share each source position gets; the rest goes to the target)."""
        attention = self.layers[-1].self_attention
        attention.keep_weights = True
        try:
            yield
        finally:
            attention.keep_weights, attention.weights = False, None
