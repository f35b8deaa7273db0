"""Translating raw strings with a network whose source is text."""

from pathlib import Path

import torch

from encdec.data.collate import source_batch
from encdec.decoding.search import DecodingConfig
from encdec.inference.loading import load_network
from encdec.networks.encoder_decoder import EncoderDecoder
from encdec.utils.errors import UserError


class Translator:
    """A network (tokenizer attached) that turns source strings into detokenized output."""

    def __init__(self, network: EncoderDecoder) -> None:
        if network.tokenizer is None:
            raise RuntimeError("this network has no tokenizer attached (attach_tokenizer)")
        self.network = network

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> "Translator":
        network, _ = load_network(path, map_location)
        if network.source_vocab_size is None:
            raise UserError(f"'{path}' holds a model of images: use python -m encdec.caption")
        return cls(network)

    @torch.no_grad()
    def translate(
        self, sentences: list[str], decoding: DecodingConfig | None = None, batch_size: int = 64
    ) -> list[str]:
        """Raw source strings -> detokenized best outputs, in input order. Sentences are decoded
        in batches of similar length, so little compute goes to padding."""
        network, tokenizer = self.network, self.network.tokenizer
        was_training = network.training
        network.eval()
        device = next(network.parameters()).device
        ids = tokenizer.encode_source(sentences)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        translations = [""] * len(ids)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            src, src_mask = source_batch([ids[i] for i in rows])
            hypotheses = network.generate(src.to(device), src_mask.to(device), decoding)
            for i, nbest in zip(rows, hypotheses, strict=True):
                translations[i] = tokenizer.decode_target(nbest[0].tokens)
        network.train(was_training)
        return translations
