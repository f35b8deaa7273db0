"""Sutskever/Cho RNN Seq2Seq: the encoder's final state is the decoder's only view of the source."""

from typing import Any

import torch

from encdec.modules.embeddings import TokenEmbedding
from encdec.modules.rnn import Bridge, ContextRNNDecoder, RNNEncoder, RNNMemory, RNNState, top_layer
from encdec.networks.base import Seq2SeqNetwork, output_layer


def build_embeddings(
    source_vocab_size: int,
    target_vocab_size: int,
    dim: int,
    share: bool,
    pad_id: int,
    scale: bool = False,
) -> tuple[TokenEmbedding, TokenEmbedding]:
    """Source and target embeddings; one shared table when ``share`` (joint vocabulary)."""
    source = TokenEmbedding(source_vocab_size, dim, pad_id, scale)
    if not share:
        return source, TokenEmbedding(target_vocab_size, dim, pad_id, scale)
    if source_vocab_size != target_vocab_size:
        raise ValueError(
            "model.share_embeddings needs a joint vocabulary "
            f"(source {source_vocab_size} != target {target_vocab_size} tokens)"
        )
    return source, source


class RNNNetwork(Seq2SeqNetwork):
    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        cell: str = "gru",
        embedding_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.3,
        bidirectional: bool = False,
        context_every_step: bool = True,
        teacher_forcing_ratio: float = 1.0,
        share_embeddings: bool = False,
        tie_output: bool = False,
        **training: Any,
    ) -> None:
        super().__init__(source_vocab_size, target_vocab_size, **training)
        self.teacher_forcing_ratio = teacher_forcing_ratio
        source_embedding, target_embedding = build_embeddings(
            source_vocab_size, target_vocab_size, embedding_dim, share_embeddings, self.pad_id
        )
        self.encoder = RNNEncoder(
            source_embedding, cell, hidden_size, num_layers, dropout, bidirectional
        )
        self.bridge = Bridge(self.encoder.output_size, hidden_size)
        self.decoder = ContextRNNDecoder(
            target_embedding,
            cell,
            hidden_size,
            num_layers,
            dropout,
            self.encoder.output_size,
            context_every_step,
        )
        self.generator = output_layer(
            embedding_dim, target_vocab_size, target_embedding if tie_output else None
        )

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> RNNMemory:
        states, final = self.encoder(src, src_mask)
        return RNNMemory(states, src_mask, self.bridge(final), top_layer(final))

    def init_state(self, memory: RNNMemory) -> RNNState:
        return RNNState(memory.final)

    def step(
        self, prev_tokens: torch.Tensor, state: RNNState, memory: RNNMemory
    ) -> tuple[torch.Tensor, RNNState, None]:
        features, state = self.decoder.step(prev_tokens, state, memory)
        return self.generator(features), state, None  # logits: (B, V)

    def teacher_forced(self, tgt_in: torch.Tensor, memory: RNNMemory) -> torch.Tensor:
        if self.training and self.teacher_forcing_ratio < 1.0:
            return self._scheduled_sampling(tgt_in, memory)
        features, _ = self.decoder(tgt_in, memory)
        return self.generator(features)  # (B, T, V)

    def _scheduled_sampling(self, tgt_in: torch.Tensor, memory: RNNMemory) -> torch.Tensor:
        """Each next input is the reference token with probability teacher_forcing_ratio, else
        the model's own previous prediction."""
        state, logits = self.init_state(memory), []
        prev = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            step_logits, state, _ = self.step(prev, state, memory)
            logits.append(step_logits)
            if t + 1 < tgt_in.size(1):
                use_reference = (
                    torch.rand(prev.shape, device=prev.device) < self.teacher_forcing_ratio
                )
                prev = torch.where(use_reference, tgt_in[:, t + 1], step_logits.argmax(-1))
        return torch.stack(logits, dim=1)
