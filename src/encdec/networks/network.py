"""What every network gives training, search and inference, whatever it is made of: the step
interface (``encode / init_state / step``), teacher forcing, the tokenizer it was built for and
how it decodes. ``EncoderDecoder`` (parts composed by config) and the Hugging Face wrappers
(``networks/hugging_face.py``) are networks."""

from abc import abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import nn

from encdec.decoding.ngram_language_model import NgramLanguageModel
from encdec.decoding.search import (
    DecodingConfig,
    Hypothesis,
    decode,
    greedy_search,
    max_output_lengths,
)
from encdec.modules.interface import Reorderable
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import BOS_ID, EOS_ID, PAD_ID


class TeacherForced(NamedTuple):
    """What the network computes for a training batch."""

    logits: torch.Tensor | None  # (B, T, V); None without a decoder (CTC only)
    attention: torch.Tensor | None  # (B, T, S) where the decoder attends in training
    ctc_log_probs: torch.Tensor | None  # (B, S, V) of the CTC head over the encoder states
    ctc_mask: torch.Tensor | None  # (B, S) the encoder's real positions


class Network(nn.Module):
    """Base of every network. Subclasses set ``encoder``, ``decoder`` (None: CTC only),
    ``frontend`` and ``ctc_head`` (None where there is none) and ``max_output_length``."""

    bos_id, eos_id, pad_id = BOS_ID, EOS_ID, PAD_ID
    max_output_length: int

    def __init__(self, target_vocab_size: int, source_vocab_size: int | None) -> None:
        super().__init__()
        self.source_vocab_size, self.target_vocab_size = source_vocab_size, target_vocab_size
        self.tokenizer: Any = None  # a Seq2SeqTokenizer, attached by whoever built the network
        self.language_model: NgramLanguageModel | None = None  # shallow fusion, where trained
        self.decoding = DecodingConfig()

    @property
    def ctc_only(self) -> bool:
        """An encoder and its CTC head, no decoder: no teacher-forced logits, CTC decoding."""
        return self.decoder is None and self.ctc_head is not None

    # ---- the step interface ----
    @abstractmethod
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Reorderable: ...

    @abstractmethod
    def init_state(self, memory: Reorderable) -> Reorderable: ...

    @abstractmethod
    def step(
        self, prev_tokens: torch.Tensor, state: Reorderable, memory: Reorderable
    ) -> tuple[torch.Tensor, Reorderable, torch.Tensor | None]: ...

    def returning_attention(self) -> AbstractContextManager[None]:
        """Within: ``step`` returns attention where the network computes it only on request."""
        return nullcontext()

    def config_node(self, node: dict[str, Any]) -> dict[str, Any]:
        """The ``net`` config node a checkpoint keeps to rebuild this network: ``node`` itself
        unless the network was loaded from somewhere a checkpoint cannot count on."""
        return node

    # ---- training ----
    @abstractmethod
    def teacher_forced(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> TeacherForced: ...

    def forward(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        # src: (B, S), tgt_in: (B, T) -> logits (B, T, V)
        return self.teacher_forced(src, src_mask, tgt_in)[0]

    # ---- tokenizer and decoding ----
    def vocab_sizes(self) -> dict[str, int]:
        """The vocabulary sizes the network was built for, as ``Seq2SeqTokenizer.vocab_sizes``."""
        sizes = {"target_vocab_size": self.target_vocab_size}
        if self.source_vocab_size is not None:
            sizes["source_vocab_size"] = self.source_vocab_size
        return sizes

    def attach_tokenizer(self, tokenizer: Any) -> None:
        if tokenizer.vocab_sizes() != self.vocab_sizes():
            raise ValueError(
                f"tokenizer vocabularies {tokenizer.vocab_sizes()} do not match the model's "
                f"{self.vocab_sizes()}"
            )
        self.tokenizer = tokenizer

    def attach_language_model(self, checkpoint: dict[str, Any]) -> None:
        """The n-gram language model a checkpoint carries, where training counted one."""
        if "language_model" in checkpoint:
            self.language_model = NgramLanguageModel.from_dict(checkpoint["language_model"])

    def generate(
        self, src: torch.Tensor, src_mask: torch.Tensor, decoding: DecodingConfig | None = None
    ) -> list[list[Hypothesis]]:
        """n-best lists of token-id hypotheses per source row, best first."""
        decoding = decoding or self.decoding
        if self.ctc_only:
            decoding = ctc_only_decoding(decoding)
        return decode(self, src, src_mask, decoding, self.max_output_length)

    def greedy_with_attention(
        self, src: torch.Tensor, src_mask: torch.Tensor, keep_attention: bool = True
    ) -> list[Hypothesis]:
        """Greedy hypotheses within ``decoding``'s length limits, each keeping its steps'
        attention where the decoder has attention (for plots)."""
        if self.ctc_only:  # no attention to keep
            return [n_best[0] for n_best in self.generate(src, src_mask)]
        limits = max_output_lengths(
            src_mask, self.decoding.max_len_a, self.decoding.max_len_b, self.max_output_length
        )
        with self.returning_attention():
            return greedy_search(self, src, src_mask, limits, keep_attention=keep_attention)


def ctc_only_decoding(decoding: DecodingConfig) -> DecodingConfig:
    """How a network without a decoder decodes: CTC's best path (a beam over CTC alone would
    need a decoder to extend its hypotheses)."""
    if decoding.beam_size > 1 or decoding.sample or decoding.lm_weight > 0:
        raise UserError(
            "a CTC-only model (model.net.decoder=null) decodes by CTC's best path: "
            "decoding.beam_size=1, decoding.sample=false, decoding.lm_weight=0"
        )
    return replace(decoding, ctc_weight=1.0)
