"""What every Seq2Seq network shares: the step interface that search uses, the tokenizer, and
decoding raw text, as a plain nn.Module (no Lightning: translation starts in a fraction of the
time). A family implements (see ``encdec.decoding.search``)::

    encode(src, src_mask)            -> memory
    init_state(memory)               -> state
    step(prev_tokens, state, memory) -> logits (B, V), state, attention (B, S) | None
    teacher_forced(tgt_in, memory)   -> logits (B, T, V)

A family's LightningModule is ``class XSeq2Seq(XNetwork, Seq2SeqModule)``: the network's
constructor passes the arguments it does not take (``**training``: optimizer, scheduler, ...)
on to the next class, which is ``Seq2SeqModule`` there and ``nn.Module`` (none left) here.
"""

from abc import abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from encdec.data.collate import source_batch
from encdec.data.tokenization import BOS_ID, EOS_ID, PAD_ID, Seq2SeqTokenizer
from encdec.decoding.search import (
    DecodingConfig,
    Hypothesis,
    decode,
    greedy_search,
    max_output_lengths,
)


class Seq2SeqNetwork(nn.Module):
    bos_id, eos_id, pad_id = BOS_ID, EOS_ID, PAD_ID
    max_output_length = 512  # hard cap on decoded length (positions for the Transformer)

    def __init__(
        self,
        source_vocab_size: int | None,  # None: the source is not text (captioning)
        target_vocab_size: int,
        **training: Any,
    ) -> None:
        super().__init__(**training)
        self.source_vocab_size, self.target_vocab_size = source_vocab_size, target_vocab_size
        self.tokenizer: Seq2SeqTokenizer | None = None
        self.decoding = DecodingConfig()

    # ---- the step interface, per family ----
    @abstractmethod
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Any: ...

    @abstractmethod
    def init_state(self, memory: Any) -> Any: ...

    @abstractmethod
    def step(
        self, prev_tokens: torch.Tensor, state: Any, memory: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]: ...

    @abstractmethod
    def teacher_forced(self, tgt_in: torch.Tensor, memory: Any) -> torch.Tensor: ...

    def returning_attention(self) -> AbstractContextManager[None]:
        """Within: ``step`` returns attention also where a family computes it only on request
        (the Transformer's cross-attention, for plots); others return theirs, or None, anyway."""
        return nullcontext()

    def forward(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        # src: (B, S), tgt_in: (B, T) -> logits (B, T, V)
        return self.teacher_forced(tgt_in, self.encode(src, src_mask))

    # ---- tokenizer and decoding ----
    def vocab_sizes(self) -> dict[str, int]:
        """The vocabulary sizes the model was built for, as ``Seq2SeqTokenizer.vocab_sizes``."""
        sizes = {"target_vocab_size": self.target_vocab_size}
        if self.source_vocab_size is not None:
            sizes["source_vocab_size"] = self.source_vocab_size
        return sizes

    def attach_tokenizer(self, tokenizer: Seq2SeqTokenizer) -> None:
        if tokenizer.vocab_sizes() != self.vocab_sizes():
            raise ValueError(
                f"tokenizer vocabularies {tokenizer.vocab_sizes()} do not match the model's "
                f"{self.vocab_sizes()}"
            )
        self.tokenizer = tokenizer

    def generate(
        self, src: torch.Tensor, src_mask: torch.Tensor, decoding: DecodingConfig | None = None
    ) -> list[list[Hypothesis]]:
        """n-best lists of token-id hypotheses per source row, best first."""
        return decode(self, src, src_mask, decoding or self.decoding, self.max_output_length)

    def greedy_with_attention(
        self, src: torch.Tensor, src_mask: torch.Tensor, keep_attention: bool = True
    ) -> list[Hypothesis]:
        """Greedy hypotheses within ``decoding``'s length limits, each keeping its steps'
        attention where the family has attention (for plots)."""
        limits = max_output_lengths(
            src_mask, self.decoding.max_len_a, self.decoding.max_len_b, self.max_output_length
        )
        with self.returning_attention():
            return greedy_search(self, src, src_mask, limits, keep_attention=keep_attention)

    @torch.no_grad()
    def translate(
        self, sentences: list[str], decoding: DecodingConfig | None = None, batch_size: int = 64
    ) -> list[str]:
        """Raw source strings -> detokenized best translations, in input order. Sentences are
        decoded in batches of similar length, so little compute goes to padding."""
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer attached (attach_tokenizer)")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        ids = self.tokenizer.encode_source(sentences)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        translations = [""] * len(ids)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            src, src_mask = source_batch([ids[i] for i in rows])
            hypotheses = self.generate(src.to(device), src_mask.to(device), decoding)
            for i, nbest in zip(rows, hypotheses, strict=True):
                translations[i] = self.tokenizer.decode_target(nbest[0].tokens)
        self.train(was_training)
        return translations


def output_layer(features: int, vocab_size: int, tied_embedding: nn.Embedding | None) -> nn.Linear:
    """Projection to the target vocabulary, optionally sharing the target embedding's weights."""
    layer = nn.Linear(features, vocab_size, bias=False)
    if tied_embedding is not None:
        if tied_embedding.embedding_dim != features:
            raise ValueError(
                f"tied output projection needs feature size {features} == "
                f"embedding size {tied_embedding.embedding_dim}"
            )
        layer.weight = tied_embedding.weight
    return layer
