"""A masked language model (BERT, Devlin et al. 2019): token embeddings, any encoder and an
output projection tied to the embeddings, predicting every source position's original token.
Pretrained on ``TokenMasking`` noise (``data/noise=token_masking``), its ``source_embedding``
and ``encoder`` carry the names and shapes of an ``EncoderDecoder``'s, so ``init_from=`` puts
them under a fresh decoder (BERT2RND, Rothe et al. 2020).

Its outputs are aligned with its inputs: ``teacher_forced`` gives logits over the source
positions (the batch's ``target_out`` is the source's original tokens, ``<pad>`` where nothing
is to be predicted), and ``generate`` fills in every position at once (the arg-max).
"""

from collections.abc import Callable

import torch
from torch import nn

from encdec.decoding.search import DecodingConfig, Hypothesis
from encdec.modules.embeddings import TokenEmbedding
from encdec.modules.interface import Reorderable
from encdec.networks.network import Network, TeacherForced
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import EOS_ID, PAD_ID

NOT_GENERATIVE = "a masked language model fills in its input; it does not decode step by step"


class MaskedLanguageModel(Network):
    def __init__(
        self,
        target_vocab_size: int,
        encoder: Callable[..., nn.Module],
        source_vocab_size: int | None = None,
        embedding_dim: int = 256,
        scale_embeddings: bool = False,
    ) -> None:
        super().__init__(target_vocab_size, source_vocab_size)
        if source_vocab_size != target_vocab_size:
            raise UserError(
                "a masked language model predicts its own input: it needs a joint vocabulary, "
                "data.tokenizer.joint=true"
            )
        self.source_embedding = TokenEmbedding(
            source_vocab_size, embedding_dim, PAD_ID, scale_embeddings
        )
        self.encoder = encoder(input_size=embedding_dim)
        self.generator = nn.Linear(self.encoder.output_size, target_vocab_size, bias=False)
        if self.encoder.output_size != embedding_dim:
            raise UserError(
                f"model.net: the encoder's output size {self.encoder.output_size} must equal "
                f"embedding_dim {embedding_dim} (the output projection is the embedding's)"
            )
        self.generator.weight = self.source_embedding.weight
        self.decoder, self.frontend, self.ctc_head = None, None, None
        self.max_output_length = 1 << 30

    def logits(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        # src: (B, S) -> (B, S, V)
        return self.generator(self.encoder(self.source_embedding(src), src_mask).states)

    def teacher_forced(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> TeacherForced:
        return TeacherForced(self.logits(src, src_mask), None, None, None)

    def generate(
        self, src: torch.Tensor, src_mask: torch.Tensor, decoding: DecodingConfig | None = None
    ) -> list[list[Hypothesis]]:
        """Every real position's most probable token, up to the source's ``</s>``."""
        log_probs = torch.log_softmax(self.logits(src, src_mask).float(), dim=-1)
        scores, tokens = log_probs.max(dim=-1)  # (B, S)
        hypotheses = []
        for row in range(src.size(0)):
            length = int(src_mask[row].sum()) - 1  # without </s>
            filled = tokens[row, :length].tolist()
            if EOS_ID in filled:
                filled = filled[: filled.index(EOS_ID)]
            hypotheses.append([Hypothesis(filled, float(scores[row, :length].sum()), True)])
        return hypotheses

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Reorderable:
        raise UserError(NOT_GENERATIVE)

    def init_state(self, memory: Reorderable) -> Reorderable:
        raise UserError(NOT_GENERATIVE)

    def step(
        self, prev_tokens: torch.Tensor, state: Reorderable, memory: Reorderable
    ) -> tuple[torch.Tensor, Reorderable, torch.Tensor | None]:
        raise UserError(NOT_GENERATIVE)

    def greedy_with_attention(
        self, src: torch.Tensor, src_mask: torch.Tensor, keep_attention: bool = True
    ) -> list[Hypothesis]:
        return [n_best[0] for n_best in self.generate(src, src_mask)]
