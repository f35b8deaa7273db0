"""Attention: Bahdanau (additive), location-sensitive (additive + where it attended before) and
Luong (dot, general) for RNN decoders, multi-head on SDPA.

RNN attention works in two steps so that keys are projected once per source sentence:
``keys = attention.project_keys(encoder_states)`` when the source is encoded, then
``context, weights = attention(query, keys, encoder_states, mask)`` for queries (B, T, H): one
decoder step (T = 1) or, where the decoder allows it, all steps at once. Location-sensitive
attention (``uses_alignment``) also takes the previous step's weights and their running sum
(``alignment``, (B, 2, S)), so it attends one step at a time.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from encdec.modules.dropout import Dropout


class BahdanauAttention(nn.Module):
    """Additive attention: score(q, k) = v^T tanh(W_q q + W_k k) (Bahdanau et al., 2015)."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)
        self.key_proj = nn.Linear(key_size, hidden_size, bias=False)
        self.energy = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, states: torch.Tensor) -> torch.Tensor:
        # states: (B, S, key_size) -> keys: (B, S, hidden)
        return self.key_proj(states)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # query: (B, T, query_size), keys: (B, S, hidden), values: (B, S, V), mask: (B, S)
        energies = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))  # (B,T,S,A)
        return _attend(self.energy(energies).squeeze(3), values, mask)


class LocationSensitiveAttention(nn.Module):
    """Additive attention that also sees where it attended so far (Chorowski et al., 2015;
    Tacotron 2, Shen et al., 2018): score = v^T tanh(W_q q + W_k k + W_f (F * a)), where F are
    ``filters`` convolutions of width ``kernel_size`` over the previous step's weights and their
    running sum. It keeps speech synthesis moving forward through the text, one step at a time."""

    uses_alignment = True

    def __init__(
        self,
        query_size: int,
        key_size: int,
        hidden_size: int,
        filters: int = 32,
        kernel_size: int = 31,
    ) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_size, hidden_size, bias=False)
        self.key_proj = nn.Linear(key_size, hidden_size)
        self.location_conv = nn.Conv1d(
            2, filters, kernel_size, padding=kernel_size // 2, bias=False
        )  # over (previous weights, their running sum)
        self.location_proj = nn.Linear(filters, hidden_size, bias=False)
        self.energy = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, states: torch.Tensor) -> torch.Tensor:
        # states: (B, S, key_size) -> keys: (B, S, hidden)
        return self.key_proj(states)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        alignment: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # query: (B, 1, query_size), keys: (B, S, hidden), values: (B, S, V), mask: (B, S),
        # alignment: (B, 2, S) the previous weights and their running sum
        location = self.location_proj(self.location_conv(alignment).transpose(1, 2))  # (B, S, A)
        energies = torch.tanh(
            self.query_proj(query).unsqueeze(2) + (keys + location).unsqueeze(1)
        )  # (B, 1, S, A)
        return _attend(self.energy(energies).squeeze(3), values, mask)


class LuongAttention(nn.Module):
    """Multiplicative attention (Luong et al., 2015): ``dot`` q.k or ``general`` q^T W k."""

    def __init__(self, query_size: int, key_size: int, kind: str) -> None:
        super().__init__()
        if kind not in ("dot", "general"):
            raise ValueError(f"unknown Luong attention '{kind}'; choose dot or general")
        if kind == "dot" and query_size != key_size:
            raise ValueError(
                f"dot attention needs query_size == key_size, got {query_size}, {key_size}"
            )
        self.key_proj = nn.Linear(key_size, query_size, bias=False) if kind == "general" else None

    def project_keys(self, states: torch.Tensor) -> torch.Tensor:
        # states: (B, S, key_size) -> keys: (B, S, query_size)
        return states if self.key_proj is None else self.key_proj(states)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # query: (B, T, query_size), keys: (B, S, query_size), values: (B, S, V), mask: (B, S)
        return _attend(torch.bmm(query, keys.transpose(1, 2)), values, mask)


def _attend(
    scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # scores: (B, T, S), values: (B, S, V), mask: (B, S) -> context (B, T, V), weights (B, T, S)
    weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)
    return torch.bmm(weights, values), weights


def build_rnn_attention(kind: str, query_size: int, key_size: int) -> nn.Module:
    """``kind``: ``bahdanau`` (additive), ``location`` (location-sensitive), ``dot`` or
    ``general`` (Luong)."""
    if kind == "bahdanau":
        return BahdanauAttention(query_size, key_size, hidden_size=query_size)
    if kind == "location":
        return LocationSensitiveAttention(query_size, key_size, hidden_size=query_size)
    if kind in ("dot", "general"):
        return LuongAttention(query_size, key_size, kind)
    raise ValueError(f"unknown attention '{kind}'; choose bahdanau, location, dot or general")


class MultiHeadAttention(nn.Module):
    """Multi-head attention on ``F.scaled_dot_product_attention``.

    Keys and values are projected by ``project_kv`` so that callers can cache them: cross-attention
    projects the encoder output once per sentence, self-attention appends one step at a time.
    SDPA never materializes the weights; with ``keep_weights`` set (for attention plots only) the
    same attention runs on an explicit softmax path and keeps its weights in ``weights``. A single
    query in eval mode (a decoding step) also takes the explicit path (faster in bf16 on CPU), and
    so does training with attention dropout on CPU, where SDPA falls back to its unfused math
    path with PyTorch's dropout; here the weights go through the cheap ``Dropout``.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"d_model {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.weights_dropout = Dropout(dropout)  # on the explicit path; SDPA takes its p
        self.query_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.keep_weights = False
        self.weights: torch.Tensor | None = None  # (B, H, T, S) of the last call, if kept

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, H, T, D/H)
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # source: (B, S, D) -> keys, values: (B, H, S, D/H)
        keys, values = self.kv_proj(source).chunk(2, dim=-1)
        return self._split_heads(keys), self._split_heads(values)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        # query: (B, T, D); keys/values: (B, H, S, D/H); mask: (B, 1, 1, S) True = attend
        query_heads = self._split_heads(self.query_proj(query))  # (B, H, T, D/H)
        dropout = self.weights_dropout.p if self.training else 0.0
        explicit = (
            self.keep_weights
            # one decoding step: two small matmuls, SDPA's CPU kernel is slower here in bf16
            or (query.size(1) == 1 and not self.training)
            # training on CPU: 1.4x faster than SDPA's math path with PyTorch's dropout
            or (dropout > 0 and query.device.type == "cpu")
        )
        if explicit:
            weights = attention_weights(query_heads, keys, mask, is_causal)  # (B, H, T, S)
            if self.keep_weights:
                self.weights = weights
            heads = self.weights_dropout(weights) @ values
        else:
            heads = F.scaled_dot_product_attention(
                query_heads, keys, values, attn_mask=mask, dropout_p=dropout, is_causal=is_causal
            )  # (B, H, T, D/H)
        batch, _, length, _ = heads.shape
        return self.out_proj(heads.transpose(1, 2).reshape(batch, length, -1))


def attention_weights(
    query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None, is_causal: bool
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) as SDPA computes it: query (B, H, T, d), keys (B, H, S, d),
    mask broadcastable to (B, H, T, S), True = attend -> weights (B, H, T, S)."""
    scores = query @ keys.transpose(-2, -1) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    if is_causal:
        length, source_length = scores.shape[-2:]
        causal = torch.ones(length, source_length, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    return torch.softmax(scores, dim=-1)
