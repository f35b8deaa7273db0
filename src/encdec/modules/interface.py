"""The one interface between encoders, decoders and search, defined once.

An **encoder** reads a batch's source (token vectors, an image, later audio frames) and returns
``Encoded``: states (B, S, D) and a mask (B, S) over the S positions (tokens, grid cells,
frames), plus the per-layer final states where it is recurrent. Every encoder has
``output_size`` (D) and ``final_states`` (whether it gives ``Encoded.final``).

A **decoder** turns ``Encoded`` into its own ``Memory`` once (projected attention keys,
cross-attention keys/values, its initial state's source), then generates step by step::

    memory(encoded)                  -> Memory        # memory.reorder(index)
    init_state(memory)               -> State         # state.reorder(index)
    step(prev_tokens, state, memory) -> features (B, F), State, attention (B, S) | None
    forward(tgt_in, memory)          -> features (B, T, F), attention (B, T, S) | None

Any decoder works with any encoder: it needs states, a mask and ``output_size`` only (and uses
the final states where an encoder gives them). ``EncoderDecoder`` composes the two with the
token embeddings and the output projection; search (``encdec.decoding.search``) sees only the
network's ``encode / init_state / step``.
"""

from abc import abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol, Self

import torch
from torch import nn

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU: h; LSTM: (h, c); each (L, B, H)


class Reorderable(Protocol):
    """A decoder's memory or state: ``reorder`` keeps batch rows ``index`` (beam search)."""

    def reorder(self, index: torch.Tensor) -> Self: ...


@dataclass
class Encoded:
    """What every encoder returns."""

    states: torch.Tensor  # (B, S, D)
    mask: torch.Tensor  # (B, S) True = a real position
    final: Hidden | None = None  # a recurrent encoder's last state per layer: (L, B, D)

    def mean(self) -> torch.Tensor:
        """(B, D): the states averaged over the real positions."""
        weights = self.mask.unsqueeze(-1).to(self.states.dtype)  # (B, S, 1)
        return (self.states * weights).sum(1) / weights.sum(1).clamp(min=1)


class Decoder(nn.Module):
    """Base of every decoder: the step interface above, ``output_size`` (F, the feature size
    the output projection reads) and ``max_output_length`` (the longest output it can make)."""

    output_size: int
    max_output_length: int = 512

    @abstractmethod
    def memory(self, encoded: Encoded) -> Reorderable: ...

    @abstractmethod
    def init_state(self, memory: Reorderable) -> Reorderable: ...

    @abstractmethod
    def step(
        self, prev_tokens: torch.Tensor, state: Reorderable, memory: Reorderable
    ) -> tuple[torch.Tensor, Reorderable, torch.Tensor | None]: ...

    @abstractmethod
    def forward(
        self, tgt_in: torch.Tensor, memory: Reorderable
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def returning_attention(self) -> AbstractContextManager[None]:
        """Within: ``step`` returns attention also where a decoder computes it only on request
        (the Transformer's cross-attention, for plots); others return theirs, or None, anyway."""
        return nullcontext()
