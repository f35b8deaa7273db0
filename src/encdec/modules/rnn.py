"""Recurrent encoders and decoders (GRU or LSTM, n layers).

``RNNEncoder`` reads the source (optionally in both directions). Two decoders read its output:
``ContextRNNDecoder`` (Sutskever et al., 2014 / Cho et al., 2014) sees only the encoder's final
state; ``AttentionRNNDecoder`` (Bahdanau et al., 2015 / Luong et al., 2015) attends over all
encoder states at every step. RNN hidden states are (layers, B, H): batch is dimension 1.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from encdec.modules.attention import build_rnn_attention
from encdec.modules.dropout import Dropout

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU: h; LSTM: (h, c); each (L, B, H)


def build_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    bidirectional: bool = False,
) -> nn.RNNBase:
    """``cell`` is ``gru`` or ``lstm``."""
    if cell not in ("gru", "lstm"):
        raise ValueError(f"unknown rnn cell '{cell}'; choose gru or lstm")
    rnn_class = nn.GRU if cell == "gru" else nn.LSTM
    return rnn_class(
        input_size,
        hidden_size,
        num_layers,
        batch_first=True,
        dropout=dropout if num_layers > 1 else 0.0,
        bidirectional=bidirectional,
    )


def select_hidden(hidden: Hidden, index: torch.Tensor) -> Hidden:
    """Keep batch rows ``index`` of an RNN hidden state."""
    if isinstance(hidden, tuple):
        return tuple(h.index_select(1, index) for h in hidden)
    return hidden.index_select(1, index)


def top_layer(hidden: Hidden) -> torch.Tensor:
    """(B, H) output of the last layer."""
    return (hidden[0] if isinstance(hidden, tuple) else hidden)[-1]


@dataclass
class RNNMemory:
    """The encoded source as RNN decoders see it."""

    states: torch.Tensor  # (B, S, H_enc)
    mask: torch.Tensor  # (B, S) True = token
    final: Hidden  # decoder's initial hidden, (L, B, H_dec)
    summary: torch.Tensor  # the encoder's final top-layer state, both directions: (B, H_enc)
    keys: torch.Tensor | None = None  # attention keys projected once: (B, S, H_key)

    def reorder(self, index: torch.Tensor) -> "RNNMemory":
        return RNNMemory(
            self.states.index_select(0, index),
            self.mask.index_select(0, index),
            select_hidden(self.final, index),
            self.summary.index_select(0, index),
            None if self.keys is None else self.keys.index_select(0, index),
        )


@dataclass
class RNNState:
    """Decoder state between steps."""

    hidden: Hidden  # (L, B, H)
    attentional: torch.Tensor | None = None  # previous attentional vector for input feeding: (B, H)

    def reorder(self, index: torch.Tensor) -> "RNNState":
        attentional = None if self.attentional is None else self.attentional.index_select(0, index)
        return RNNState(select_hidden(self.hidden, index), attentional)


class RNNEncoder(nn.Module):
    """Embeds and reads the source; the final states of both directions are joined per layer."""

    def __init__(
        self,
        embedding: nn.Embedding,
        cell: str,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        bidirectional: bool,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(
            cell, embedding.embedding_dim, hidden_size, num_layers, dropout, bidirectional
        )
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor) -> tuple[torch.Tensor, Hidden]:
        # src: (B, S) -> states: (B, S, H_out); final: (L, B, H_out)
        embedded = self.dropout(self.embedding(src))
        lengths = src_mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        packed_states, final = self.rnn(packed)
        states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=src.size(1))
        return self.dropout(states), self._join_directions(final)

    def _join_directions(self, final: Hidden) -> Hidden:
        if isinstance(final, tuple):
            return tuple(self._join_directions(h) for h in final)
        if not self.rnn.bidirectional:
            return final
        layers_x2, batch, hidden = final.shape  # (L*2, B, H) -> (L, B, 2H)
        return (
            final.view(layers_x2 // 2, 2, batch, hidden)
            .transpose(1, 2)
            .reshape(layers_x2 // 2, batch, 2 * hidden)
        )


class Bridge(nn.Module):
    """Maps the encoder's final state to the decoder's initial state: tanh(W h), per layer."""

    def __init__(self, encoder_size: int, decoder_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(encoder_size, decoder_size)

    def forward(self, final: Hidden) -> Hidden:
        if isinstance(final, tuple):
            return tuple(torch.tanh(self.proj(h)) for h in final)
        return torch.tanh(self.proj(final))


class ContextRNNDecoder(nn.Module):
    """Decoder whose only view of the source is the encoder's final state.

    With ``context_every_step`` (Cho et al., 2014) the encoder's final top-layer state is also
    concatenated to every decoder input and to the pre-output layer.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        cell: str,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        context_size: int,
        context_every_step: bool,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.context_size = context_size if context_every_step else 0
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(
            cell, embedding.embedding_dim + self.context_size, hidden_size, num_layers, dropout
        )
        self.pre_output = nn.Linear(hidden_size + self.context_size, embedding.embedding_dim)

    def forward(
        self, tgt_in: torch.Tensor, memory: RNNMemory, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        # tgt_in: (B, T) -> features (B, T, E) and the last hidden; the whole sequence at once
        inputs = self.dropout(self.embedding(tgt_in))
        if self.context_size:
            context = memory.summary.unsqueeze(1).expand(-1, tgt_in.size(1), -1)
            inputs = torch.cat([inputs, context], dim=-1)
        outputs, hidden = self.rnn(inputs, memory.final if hidden is None else hidden)
        if self.context_size:
            outputs = torch.cat([outputs, context], dim=-1)
        return torch.tanh(self.pre_output(self.dropout(outputs))), hidden

    def step(
        self, prev_tokens: torch.Tensor, state: RNNState, memory: RNNMemory
    ) -> tuple[torch.Tensor, RNNState]:
        # prev_tokens: (B,) -> features (B, E)
        features, hidden = self.forward(prev_tokens.unsqueeze(1), memory, state.hidden)
        return features.squeeze(1), RNNState(hidden)


class AttentionRNNDecoder(nn.Module):
    """RNN decoder with attention over the encoder states.

    ``bahdanau``: the previous hidden state queries the source and the context enters the RNN input.
    ``dot``/``general`` (Luong): the new hidden state queries the source and the attentional vector
    tanh(W [h; context]) is the output; with ``input_feeding`` it is also fed to the next input.
    With ``context_gate`` (Show, Attend and Tell, Xu et al. 2015) the context is scaled by
    sigmoid(W_gate query), a gate per feature computed from the attention query.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        cell: str,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        encoder_size: int,
        attention: str,
        input_feeding: bool,
        context_gate: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.query_first = attention == "bahdanau"
        self.input_feeding = input_feeding
        input_size = (
            embedding.embedding_dim
            + (encoder_size if self.query_first else 0)
            + (hidden_size if input_feeding else 0)
        )
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(cell, input_size, hidden_size, num_layers, dropout)
        self.attention = build_rnn_attention(attention, hidden_size, encoder_size)
        self.attentional = nn.Linear(hidden_size + encoder_size, hidden_size, bias=False)
        self.gate = nn.Linear(hidden_size, encoder_size) if context_gate else None
        self.hidden_size = hidden_size

    def project_keys(self, states: torch.Tensor) -> torch.Tensor:
        return self.attention.project_keys(states)

    def _attend(self, query: torch.Tensor, memory: RNNMemory) -> tuple[torch.Tensor, torch.Tensor]:
        # query: (B, T, H) -> context (B, T, H_enc), weights (B, T, S)
        context, weights = self.attention(query, memory.keys, memory.states, memory.mask)
        if self.gate is not None:
            context = torch.sigmoid(self.gate(query)) * context
        return context, weights

    def init_state(self, memory: RNNMemory) -> RNNState:
        batch = memory.states.size(0)
        attentional = (
            memory.states.new_zeros(batch, self.hidden_size) if self.input_feeding else None
        )
        return RNNState(memory.final, attentional)

    def step(
        self, prev_tokens: torch.Tensor, state: RNNState, memory: RNNMemory
    ) -> tuple[torch.Tensor, RNNState, torch.Tensor]:
        # prev_tokens: (B,) -> features (B, H), state, attention weights (B, S)
        inputs = [self.dropout(self.embedding(prev_tokens))]
        if self.query_first:
            context, weights = self._attend(top_layer(state.hidden).unsqueeze(1), memory)
            inputs.append(context.squeeze(1))
        if self.input_feeding:
            inputs.append(state.attentional)
        output, hidden = self.rnn(torch.cat(inputs, dim=-1).unsqueeze(1), state.hidden)
        output = output.squeeze(1)  # (B, H)
        if not self.query_first:
            context, weights = self._attend(output.unsqueeze(1), memory)
        attentional = torch.tanh(self.attentional(torch.cat([output, context.squeeze(1)], dim=-1)))
        next_state = RNNState(hidden, attentional if self.input_feeding else None)
        return self.dropout(attentional), next_state, weights.squeeze(1)

    def forward(self, tgt_in: torch.Tensor, memory: RNNMemory) -> tuple[torch.Tensor, torch.Tensor]:
        # tgt_in: (B, T) -> features (B, T, H), attention weights (B, T, S)
        if self.query_first or self.input_feeding:  # each step needs the previous one
            state = self.init_state(memory)
            features, weights = [], []
            for t in range(tgt_in.size(1)):
                feature, state, step_weights = self.step(tgt_in[:, t], state, memory)
                features.append(feature)
                weights.append(step_weights)
            return torch.stack(features, dim=1), torch.stack(weights, dim=1)
        # Luong without input feeding: run the RNN over the whole sequence, then attend in one go.
        outputs, _ = self.rnn(self.dropout(self.embedding(tgt_in)), memory.final)  # (B, T, H)
        context, weights = self._attend(outputs, memory)  # (B, T, H_enc), (B, T, S)
        attentional = torch.tanh(self.attentional(torch.cat([outputs, context], dim=-1)))
        return self.dropout(attentional), weights
