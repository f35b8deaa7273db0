"""Recurrent encoder and decoders (GRU or LSTM, n layers).

``RNNEncoder`` reads embedded tokens (optionally in both directions). Two decoders read any
encoder's output: ``ContextRNNDecoder`` (Sutskever et al., 2014 / Cho et al., 2014) sees only a
summary of the source (a recurrent encoder's final state); ``AttentionRNNDecoder`` (Bahdanau et
al., 2015 / Luong et al., 2015; Show, Attend and Tell, Xu et al., 2015, over an image grid)
attends over all encoder states at every step. RNN hidden states are (layers, B, H): batch is
dimension 1.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from encdec.modules.attention import build_rnn_attention
from encdec.modules.dropout import Dropout
from encdec.modules.interface import Decoder, Encoded, Hidden

Cell = Literal["gru", "lstm"]


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
    summary: torch.Tensor  # the source in one vector: (B, H_enc)
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
    alignment: torch.Tensor | None = None  # location-sensitive attention: the previous weights
    #                                        and their running sum, (B, 2, S)

    def reorder(self, index: torch.Tensor) -> "RNNState":
        attentional = None if self.attentional is None else self.attentional.index_select(0, index)
        alignment = None if self.alignment is None else self.alignment.index_select(0, index)
        return RNNState(select_hidden(self.hidden, index), attentional, alignment)


class RNNEncoder(nn.Module):
    """Reads embedded tokens; the final states of both directions are joined per layer."""

    final_states = True

    def __init__(
        self,
        input_size: int,
        cell: Cell = "gru",
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.3,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(cell, input_size, hidden_size, num_layers, dropout, bidirectional)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> Encoded:
        # embedded: (B, S, E), mask: (B, S) -> states (B, S, H_out), final (L, B, H_out)
        lengths = mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(
            self.dropout(embedded), lengths, batch_first=True, enforce_sorted=False
        )
        packed_states, final = self.rnn(packed)
        states, _ = pad_packed_sequence(
            packed_states, batch_first=True, total_length=embedded.size(1)
        )
        return Encoded(self.dropout(states), mask, self._join_directions(final))

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


class InitialState(nn.Module):
    """A decoder's first hidden state. From a recurrent encoder's final states: tanh(W h) per
    layer (the same W for an LSTM's h and c; the top layer serves every layer where the layer
    counts differ). From any other encoder: tanh(W_h m) and, for an LSTM, tanh(W_c m) of the
    mean state m, in every layer (Show, Attend and Tell)."""

    def __init__(
        self, memory_size: int, hidden_size: int, cell: str, num_layers: int, from_final: bool
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(memory_size, hidden_size)
        self.cell_proj = (
            nn.Linear(memory_size, hidden_size) if cell == "lstm" and not from_final else None
        )
        self.lstm, self.num_layers, self.from_final = cell == "lstm", num_layers, from_final

    def forward(self, encoded: Encoded) -> Hidden:
        if not self.from_final:
            mean = encoded.mean().unsqueeze(0).expand(self.num_layers, -1, -1)  # (L, B, D)
            hidden = torch.tanh(self.proj(mean))
            return (hidden, torch.tanh(self.cell_proj(mean))) if self.lstm else hidden
        final = encoded.final if isinstance(encoded.final, tuple) else (encoded.final,)
        if final[0].size(0) != self.num_layers:
            final = tuple(h[-1:].expand(self.num_layers, -1, -1) for h in final)
        hidden = tuple(torch.tanh(self.proj(h)) for h in final)
        if not self.lstm:
            return hidden[0]
        return hidden if len(hidden) == 2 else (hidden[0], hidden[0])


def source_summary(encoded: Encoded) -> torch.Tensor:
    """(B, D): a recurrent encoder's final top-layer state, else the mean state."""
    return encoded.mean() if encoded.final is None else top_layer(encoded.final)


class ContextRNNDecoder(Decoder):
    """Decoder whose only view of the source is one vector: its initial state comes from the
    encoder's final state (or mean state). With ``context_every_step`` (Cho et al., 2014) the
    source summary is also concatenated to every decoder input and to the pre-output layer."""

    def __init__(
        self,
        embedding: nn.Embedding,
        memory_size: int,
        memory_final: bool,
        cell: Cell = "gru",
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.3,
        context_every_step: bool = True,
    ) -> None:
        super().__init__()
        self.initial_state = InitialState(memory_size, hidden_size, cell, num_layers, memory_final)
        self.embedding = embedding
        self.context_size = memory_size if context_every_step else 0
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(
            cell, embedding.embedding_dim + self.context_size, hidden_size, num_layers, dropout
        )
        self.pre_output = nn.Linear(hidden_size + self.context_size, embedding.embedding_dim)
        self.output_size = embedding.embedding_dim

    def memory(self, encoded: Encoded) -> RNNMemory:
        return RNNMemory(
            encoded.states, encoded.mask, self.initial_state(encoded), source_summary(encoded)
        )

    def init_state(self, memory: RNNMemory) -> RNNState:
        return RNNState(memory.final)

    def _run(
        self, tgt_in: torch.Tensor, memory: RNNMemory, hidden: Hidden
    ) -> tuple[torch.Tensor, Hidden]:
        # tgt_in: (B, T) -> features (B, T, E) and the last hidden; the whole sequence at once
        inputs = self.dropout(self.embedding(tgt_in))
        if self.context_size:
            context = memory.summary.unsqueeze(1).expand(-1, tgt_in.size(1), -1)
            inputs = torch.cat([inputs, context], dim=-1)
        outputs, hidden = self.rnn(inputs, hidden)
        if self.context_size:
            outputs = torch.cat([outputs, context], dim=-1)
        return torch.tanh(self.pre_output(self.dropout(outputs))), hidden

    def forward(self, tgt_in: torch.Tensor, memory: RNNMemory) -> tuple[torch.Tensor, None]:
        # tgt_in: (B, T) -> features (B, T, E), no attention
        return self._run(tgt_in, memory, memory.final)[0], None

    def step(
        self, prev_tokens: torch.Tensor, state: RNNState, memory: RNNMemory
    ) -> tuple[torch.Tensor, RNNState, None]:
        # prev_tokens: (B,) -> features (B, E)
        features, hidden = self._run(prev_tokens.unsqueeze(1), memory, state.hidden)
        return features.squeeze(1), RNNState(hidden), None


class AttentionRNNDecoder(Decoder):
    """RNN decoder with attention over the encoder states.

    ``bahdanau``: the previous hidden state queries the source and the context enters the RNN input;
    ``location`` (location-sensitive, Tacotron 2's) does the same and also sees where it attended
    before (the state carries its weights).
    ``dot``/``general`` (Luong): the new hidden state queries the source and the attentional vector
    tanh(W [h; context]) is the output; with ``input_feeding`` it is also fed to the next input.
    With ``context_gate`` (Show, Attend and Tell, Xu et al. 2015) the context is scaled by
    sigmoid(W_gate query), a gate per feature computed from the attention query.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        memory_size: int,
        memory_final: bool,
        cell: Cell = "gru",
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.3,
        attention: Literal["bahdanau", "location", "dot", "general"] = "bahdanau",
        input_feeding: bool = False,
        context_gate: bool = False,
    ) -> None:
        super().__init__()
        self.initial_state = InitialState(memory_size, hidden_size, cell, num_layers, memory_final)
        self.embedding = embedding
        self.query_first = attention in ("bahdanau", "location")
        self.input_feeding = input_feeding
        input_size = (
            embedding.embedding_dim
            + (memory_size if self.query_first else 0)
            + (hidden_size if input_feeding else 0)
        )
        self.dropout = Dropout(dropout)
        self.rnn = build_rnn(cell, input_size, hidden_size, num_layers, dropout)
        self.attention = build_rnn_attention(attention, hidden_size, memory_size)
        self.location_aware = getattr(self.attention, "uses_alignment", False)
        self.attentional = nn.Linear(hidden_size + memory_size, hidden_size, bias=False)
        self.gate = nn.Linear(hidden_size, memory_size) if context_gate else None
        self.hidden_size = self.output_size = hidden_size

    def memory(self, encoded: Encoded) -> RNNMemory:
        return RNNMemory(
            encoded.states,
            encoded.mask,
            self.initial_state(encoded),
            source_summary(encoded),
            self.attention.project_keys(encoded.states),
        )

    def _attend(
        self, query: torch.Tensor, memory: RNNMemory, alignment: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # query: (B, T, H) -> context (B, T, H_enc), weights (B, T, S)
        where = {"alignment": alignment} if self.location_aware else {}
        context, weights = self.attention(query, memory.keys, memory.states, memory.mask, **where)
        if self.gate is not None:
            context = torch.sigmoid(self.gate(query)) * context
        return context, weights

    def init_state(self, memory: RNNMemory) -> RNNState:
        batch = memory.states.size(0)
        attentional = (
            memory.states.new_zeros(batch, self.hidden_size) if self.input_feeding else None
        )
        alignment = None
        if self.location_aware:  # nothing attended yet
            alignment = memory.states.new_zeros(batch, 2, memory.states.size(1))
        return RNNState(memory.final, attentional, alignment)

    def step(
        self, prev_tokens: torch.Tensor, state: RNNState, memory: RNNMemory
    ) -> tuple[torch.Tensor, RNNState, torch.Tensor]:
        # prev_tokens: (B,) -> features (B, H), state, attention weights (B, S)
        inputs = [self.dropout(self.embedding(prev_tokens))]
        alignment = None
        if self.query_first:
            query = top_layer(state.hidden).unsqueeze(1)  # (B, 1, H)
            context, weights = self._attend(query, memory, state.alignment)
            inputs.append(context.squeeze(1))
            if self.location_aware:  # (B, 2, S): these weights, and the running sum
                alignment = torch.cat([weights, state.alignment[:, 1:] + weights], dim=1)
        if self.input_feeding:
            inputs.append(state.attentional)
        output, hidden = self.rnn(torch.cat(inputs, dim=-1).unsqueeze(1), state.hidden)
        output = output.squeeze(1)  # (B, H)
        if not self.query_first:
            context, weights = self._attend(output.unsqueeze(1), memory)
        attentional = torch.tanh(self.attentional(torch.cat([output, context.squeeze(1)], dim=-1)))
        next_state = RNNState(hidden, attentional if self.input_feeding else None, alignment)
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
