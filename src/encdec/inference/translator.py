"""Translating raw strings with a network whose source is text."""

from pathlib import Path

import torch

from encdec.data.collate import source_batch
from encdec.decoding.search import DecodingConfig
from encdec.inference.loading import load_network
from encdec.networks.network import Network
from encdec.networks.text_to_speech import TextToSpeech
from encdec.utils.errors import UserError


class Translator:
    """A network (tokenizer attached) that turns source strings into detokenized output."""

    def __init__(self, network: Network) -> None:
        if network.tokenizer is None:
            raise RuntimeError("this network has no tokenizer attached (attach_tokenizer)")
        self.network = network

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> "Translator":
        network, _ = load_network(path, map_location)
        if isinstance(network, TextToSpeech):
            raise UserError(f"'{path}' holds a speech synthesizer: use python -m encdec.speak")
        if network.frontend is not None:
            raise UserError(f"'{path}' holds a speech recognizer: use python -m encdec.transcribe")
        if network.source_vocab_size is None:
            raise UserError(f"'{path}' holds a model of images: use python -m encdec.caption")
        return cls(network)

    def translate(
        self, sentences: list[str], decoding: DecodingConfig | None = None, batch_size: int = 64
    ) -> list[str]:
        """Raw source strings -> detokenized best outputs, in input order."""
        return [nbest[0][0] for nbest in self.translate_nbest(sentences, decoding, batch_size)]

    @torch.no_grad()
    def translate_nbest(
        self, sentences: list[str], decoding: DecodingConfig | None = None, batch_size: int = 64
    ) -> list[list[tuple[str, float]]]:
        """Raw source strings -> the n best (detokenized output, score) of each, best first,
        in input order. The score is the search's: the log-probability, divided by the length
        penalty in beam search. Sentences are decoded in batches of similar length, so little
        compute goes to padding."""
        network, tokenizer = self.network, self.network.tokenizer
        was_training = network.training
        network.eval()
        device = next(network.parameters()).device
        ids = tokenizer.encode_source(sentences)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        outputs: list[list[tuple[str, float]]] = [[] for _ in ids]
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            src, src_mask = source_batch([ids[i] for i in rows])
            hypotheses = network.generate(src.to(device), src_mask.to(device), decoding)
            for i, nbest in zip(rows, hypotheses, strict=True):
                outputs[i] = [(tokenizer.decode_target(h.tokens), h.score) for h in nbest]
        network.train(was_training)
        return outputs
