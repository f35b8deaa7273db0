"""Transformer Seq2Seq (Vaswani et al., 2017) with KV-cached incremental decoding."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from encdec.modules.embeddings import build_positions
from encdec.modules.transformer import (
    TransformerDecoder,
    TransformerEncoder,
    TransformerMemory,
    TransformerState,
)
from encdec.networks.base import Seq2SeqNetwork, output_layer
from encdec.networks.rnn import build_embeddings


class TransformerDecoderSteps:
    """The step interface of a Transformer decoder with a KV cache over ``TransformerMemory``,
    shared by the translator and the captioner. Needs ``decoder`` (a ``TransformerDecoder``),
    ``generator``, ``num_heads`` and ``d_model``."""

    decoder: TransformerDecoder
    generator: torch.nn.Linear
    num_heads: int
    d_model: int

    def init_state(self, memory: TransformerMemory) -> TransformerState:
        batch = memory.states.size(0)
        empty = memory.states.new_zeros(batch, self.num_heads, 0, self.d_model // self.num_heads)
        return TransformerState([(empty, empty)] * len(self.decoder.layers), 0)

    def step(
        self, prev_tokens: torch.Tensor, state: TransformerState, memory: TransformerMemory
    ) -> tuple[torch.Tensor, TransformerState, torch.Tensor | None]:
        features, state = self.decoder(prev_tokens.unsqueeze(1), memory, state)
        cross_attention = self.decoder.layers[-1].cross_attention
        weights = None  # only within returning_attention(): the last layer's, heads averaged
        if cross_attention.keep_weights:
            weights = cross_attention.weights[:, :, -1].mean(dim=1)  # (B, H, 1, S) -> (B, S)
        return self.generator(features.squeeze(1)), state, weights  # logits: (B, V)

    @contextmanager
    def returning_attention(self) -> Iterator[None]:
        """Within: ``step`` also returns the last decoder layer's cross-attention (B, S),
        averaged over heads, computed on an explicit path (SDPA elsewhere: training and
        search stay fast)."""
        cross_attention = self.decoder.layers[-1].cross_attention
        cross_attention.keep_weights = True
        try:
            yield
        finally:
            cross_attention.keep_weights, cross_attention.weights = False, None

    def teacher_forced(self, tgt_in: torch.Tensor, memory: TransformerMemory) -> torch.Tensor:
        features, _ = self.decoder(tgt_in, memory)
        return self.generator(features)  # (B, T, V)


class TransformerNetwork(TransformerDecoderSteps, Seq2SeqNetwork):
    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: str = "sinusoidal",
        max_positions: int = 1024,
        norm_first: bool = True,
        share_embeddings: bool = True,
        tie_output: bool = True,
        **training: Any,
    ) -> None:
        super().__init__(source_vocab_size, target_vocab_size, **training)
        self.d_model, self.num_heads = d_model, num_heads
        self.max_output_length = max_positions - 1  # BOS takes position 0
        source_embedding, target_embedding = build_embeddings(
            source_vocab_size, target_vocab_size, d_model, share_embeddings, self.pad_id, scale=True
        )
        layer_args = dict(
            dim=d_model,
            num_heads=num_heads,
            ff_dim=ff_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            norm_first=norm_first,
        )
        self.encoder = TransformerEncoder(
            source_embedding,
            build_positions(positions, d_model, max_positions),
            encoder_layers,
            **layer_args,
        )
        self.decoder = TransformerDecoder(
            target_embedding,
            build_positions(positions, d_model, max_positions),
            decoder_layers,
            **layer_args,
        )
        self.generator = output_layer(
            d_model, target_vocab_size, target_embedding if tie_output else None
        )

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> TransformerMemory:
        states = self.encoder(src, src_mask)  # (B, S, D)
        return TransformerMemory(states, src_mask, self.decoder.cross_keys_values(states))
