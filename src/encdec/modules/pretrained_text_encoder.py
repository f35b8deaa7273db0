"""A pretrained Transformer encoder from Hugging Face ``transformers`` (BERT, MiniLM, RoBERTa:
any ``AutoModel`` with a last hidden state) as the encoder of an encoder-decoder: a BERT2RND
warm start (Rothe et al. 2020), the decoder trained from scratch.

It embeds its own tokens, so the source must be read with its tokenizer
(``data.tokenizer.source_pretrained``: the same directory). The batches' source,
``tokens + </s>``, becomes the model's ``[CLS] tokens [SEP]``.
"""

import torch
from torch import nn

from encdec.modules.interface import Encoded
from encdec.utils.errors import UserError


class PretrainedTextEncoder(nn.Module):
    final_states = False

    def __init__(self, pretrained: str, freeze: bool = False) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        try:
            self.model = AutoModel.from_pretrained(pretrained)
            tokenizer = AutoTokenizer.from_pretrained(pretrained)
        except OSError as error:
            first_line = str(error).strip().splitlines()[0]
            raise UserError(f"model.net.encoder.pretrained={pretrained}: {first_line}") from None
        self.start_id, self.end_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        if self.start_id is None or self.end_id is None:
            raise UserError(
                f"model.net.encoder.pretrained={pretrained}: its tokenizer has no [CLS]/[SEP] "
                "(or <s>/</s>) tokens to frame a sentence with"
            )
        self.max_length = self.model.config.max_position_embeddings
        self.output_size = self.model.config.hidden_size
        self.model.requires_grad_(not freeze)

    def forward(self, src: torch.Tensor, mask: torch.Tensor) -> Encoded:
        # src: (B, S) ids, each row ending in </s> -> states (B, S + 1, D) of [CLS] ids [SEP]
        batch, length = src.shape
        if length + 1 > self.max_length:
            raise UserError(
                f"a source of {length} tokens is longer than the pretrained encoder's "
                f"{self.max_length - 1}: lower data.max_length"
            )
        ids = src.clone()
        ids[torch.arange(batch, device=src.device), mask.sum(1) - 1] = self.end_id
        start = torch.full((batch, 1), self.start_id, dtype=src.dtype, device=src.device)
        ids = torch.cat([start, ids], dim=1)
        mask = torch.cat([mask.new_ones(batch, 1), mask], dim=1)
        states = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return Encoded(states, mask)
