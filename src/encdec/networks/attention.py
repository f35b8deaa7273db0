"""Attention Seq2Seq: bidirectional RNN encoder, RNN decoder attending with Bahdanau or Luong."""

from typing import Any

import torch
from torch import nn

from encdec.modules.rnn import (
    AttentionRNNDecoder,
    Bridge,
    RNNEncoder,
    RNNMemory,
    RNNState,
    top_layer,
)
from encdec.networks.base import Seq2SeqNetwork, output_layer
from encdec.networks.rnn import build_embeddings


class AttentionDecoderSteps:
    """The step interface of an attention RNN decoder over ``RNNMemory`` (S: source positions or
    image grid cells), shared by the translator and the captioner. Needs ``decoder`` (an
    ``AttentionRNNDecoder``) and ``generator``."""

    decoder: AttentionRNNDecoder
    generator: nn.Linear

    def init_state(self, memory: RNNMemory) -> RNNState:
        return self.decoder.init_state(memory)

    def step(
        self, prev_tokens: torch.Tensor, state: RNNState, memory: RNNMemory
    ) -> tuple[torch.Tensor, RNNState, torch.Tensor]:
        features, state, weights = self.decoder.step(prev_tokens, state, memory)
        return self.generator(features), state, weights  # (B, V), state, (B, S)

    def teacher_forced(self, tgt_in: torch.Tensor, memory: RNNMemory) -> torch.Tensor:
        features, _ = self.decoder(tgt_in, memory)  # (B, T, H), attention (B, T, S)
        return self.generator(features)  # (B, T, V)


class AttentionNetwork(AttentionDecoderSteps, Seq2SeqNetwork):
    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        cell: str = "gru",
        embedding_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 1,
        dropout: float = 0.3,
        bidirectional: bool = True,
        attention: str = "bahdanau",
        input_feeding: bool = False,
        share_embeddings: bool = False,
        tie_output: bool = False,
        **training: Any,
    ) -> None:
        super().__init__(source_vocab_size, target_vocab_size, **training)
        source_embedding, target_embedding = build_embeddings(
            source_vocab_size, target_vocab_size, embedding_dim, share_embeddings, self.pad_id
        )
        self.encoder = RNNEncoder(
            source_embedding, cell, hidden_size, num_layers, dropout, bidirectional
        )
        self.bridge = Bridge(self.encoder.output_size, hidden_size)
        self.decoder = AttentionRNNDecoder(
            target_embedding,
            cell,
            hidden_size,
            num_layers,
            dropout,
            self.encoder.output_size,
            attention,
            input_feeding,
        )
        self.generator = output_layer(
            hidden_size, target_vocab_size, target_embedding if tie_output else None
        )

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> RNNMemory:
        states, final = self.encoder(src, src_mask)
        keys = self.decoder.project_keys(states)
        return RNNMemory(states, src_mask, self.bridge(final), top_layer(final), keys)
