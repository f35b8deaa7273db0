"""Speaking raw strings with a speech synthesis network, without Lightning: text through the
text frontend training read it with (characters or phonemes), symbols checked against the
vocabulary, greedy synthesis to log-mel frames, Griffin-Lim to a waveform."""

from pathlib import Path

import torch
from omegaconf import OmegaConf

from encdec.data.collate import source_batch
from encdec.data.text_frontends import Characters, TextFrontend
from encdec.decoding.continuous import Synthesized
from encdec.inference.loading import load_network
from encdec.modules.vocoder import GriffinLim
from encdec.networks.text_to_speech import TextToSpeech
from encdec.utils.config import instantiate
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import SPECIAL_TOKENS


class Synthesizer:
    def __init__(
        self,
        network: TextToSpeech,
        griffin_lim_iterations: int = 32,
        text_frontend: TextFrontend | None = None,  # None: characters
    ) -> None:
        if network.tokenizer is None:
            raise RuntimeError("this network has no tokenizer attached (attach_tokenizer)")
        self.network = network
        self.text_frontend = text_frontend or Characters()
        device = next(network.parameters()).device
        self.vocoder = GriffinLim(network.mel, griffin_lim_iterations).to(device)
        vocabulary = network.tokenizer.source.get_vocab()
        self.characters = {c for c in vocabulary if c not in SPECIAL_TOKENS}

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str = "cpu", griffin_lim_iterations: int = 32
    ) -> "Synthesizer":
        network, checkpoint = load_network(path, map_location)
        if not isinstance(network, TextToSpeech):
            raise UserError(
                f"'{path}' holds no speech synthesizer: use python -m encdec.translate, "
                "encdec.transcribe or encdec.caption"
            )
        frontend = (checkpoint.get("data") or {}).get("text_frontend")  # absent: characters
        if frontend is not None:
            frontend = instantiate(OmegaConf.create(frontend), "data.text_frontend")
        return cls(network, griffin_lim_iterations, frontend)

    @property
    def sample_rate(self) -> int:
        return self.network.sample_rate

    def check(self, texts: list[str]) -> list[str]:
        """The texts through the text frontend; a clear error for the first text that is empty,
        has symbols the model never saw in training, or is longer than its encoder takes."""
        read, problems = self.read(texts)
        if first := next((problem for problem in problems if problem), None):
            raise UserError(first)
        return read

    def read(self, texts: list[str]) -> tuple[list[str], list[str | None]]:
        """The texts through the text frontend (one call for all), and what stops each from
        being said (None: nothing)."""
        units = self.text_frontend.units
        read = self.text_frontend(texts)
        problems: list[str | None] = []
        for number, text in enumerate(read):
            unknown = sorted(set(text) - self.characters)
            if not text:
                problems.append(f"text {number} is empty: nothing to say")
            elif unknown:
                problems.append(
                    f"text {number} has {units} the model was not trained on: "
                    f"{' '.join(repr(c) for c in unknown)} (spell them out, or leave them out)"
                )
            elif len(text) > self.network.max_characters:
                problems.append(
                    f"text {number} has {len(text)} {units}; this model reads at most "
                    f"{self.network.max_characters} (model.net.max_characters): split it into "
                    "sentences"
                )
            else:
                problems.append(None)
        return read, problems

    @torch.no_grad()
    def synthesize(self, texts: list[str], seed: int = 0) -> list[Synthesized]:
        """Texts -> their log-mel spectrograms (and alignments), one batch; the pre-net's
        inference dropout is drawn from ``seed``."""
        network = self.network
        was_training = network.training
        network.eval()
        device = next(network.parameters()).device
        ids = network.tokenizer.encode_source(self.check(texts))
        src, src_mask = source_batch(ids)
        torch.manual_seed(seed)
        results = network.synthesize(src.to(device), src_mask.to(device), keep_alignment=True)
        network.train(was_training)
        return results

    def speak(self, texts: list[str], seed: int = 0) -> list[torch.Tensor]:
        """Texts -> waveforms (N,) at ``sample_rate``."""
        return [self.vocoder(result.log_mel) for result in self.synthesize(texts, seed)]
