"""Transcribing audio files (or encoded bytes) with a network whose source is speech, without
Lightning: each file is read as training read its audio (mono, resampled to the front-end's
rate), and batches group clips of similar length."""

import time
from pathlib import Path

import torch

from encdec.data.audio import AudioError, read_audio
from encdec.decoding.search import DecodingConfig
from encdec.inference.loading import load_network
from encdec.networks.network import Network
from encdec.networks.text_to_speech import TextToSpeech
from encdec.utils.errors import UserError


class Transcriber:
    def __init__(self, network: Network) -> None:
        if network.tokenizer is None:
            raise RuntimeError("this network has no tokenizer attached (attach_tokenizer)")
        if network.frontend is None:
            raise ValueError("this network has no audio front-end: it does not read speech")
        self.network = network
        self.decode_seconds = 0.0  # time spent in search, over all calls
        self.audio_seconds = 0.0  # audio transcribed, over all calls

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> "Transcriber":
        network, _ = load_network(path, map_location)
        if isinstance(network, TextToSpeech):
            raise UserError(f"'{path}' holds a speech synthesizer: use python -m encdec.speak")
        if network.frontend is None:
            kind = "text" if network.source_vocab_size is not None else "images"
            tool = "translate" if kind == "text" else "caption"
            raise UserError(
                f"'{path}' holds a model of {kind}, not a speech recognizer: "
                f"use python -m encdec.{tool}"
            )
        return cls(network)

    @property
    def sample_rate(self) -> int:
        return self.network.frontend.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Decoding seconds per second of audio, over everything transcribed so far."""
        return self.decode_seconds / max(self.audio_seconds, 1e-9)

    def read(self, source: str | Path | bytes, name: str) -> torch.Tensor:
        try:
            return read_audio(source, self.sample_rate)[0]
        except AudioError as error:
            raise UserError(f"{name}: {error}") from None

    @torch.no_grad()
    def transcribe_waves(
        self, waves: list[torch.Tensor], decoding: DecodingConfig | None = None
    ) -> list[str]:
        """Waveforms (N_i,) at the front-end's rate, decoded together -> transcripts."""
        network = self.network
        was_training = network.training
        network.eval()
        device = next(network.parameters()).device
        lengths = torch.tensor([len(w) for w in waves])
        source = torch.zeros(len(waves), int(lengths.max()))
        for row, wave in enumerate(waves):
            source[row, : len(wave)] = wave
        mask = torch.arange(source.size(1))[None] < lengths[:, None]  # (B, N)
        start = time.perf_counter()
        hypotheses = network.generate(source.to(device), mask.to(device), decoding)
        texts = [network.tokenizer.decode_target(nbest[0].tokens) for nbest in hypotheses]
        self.decode_seconds += time.perf_counter() - start
        self.audio_seconds += float(lengths.sum()) / self.sample_rate
        network.train(was_training)
        return texts

    def transcribe_files(
        self,
        paths: list[str | Path],
        decoding: DecodingConfig | None = None,
        batch_seconds: float = 120.0,
    ) -> list[str]:
        """Audio files -> transcripts in input order; clips sorted by length are decoded in
        batches of at most ``batch_seconds`` of padded audio."""
        waves = [self.read(path, str(path)) for path in paths]
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        budget = batch_seconds * self.sample_rate
        batches: list[list[int]] = [[]]
        for index in order:  # a batch grows while its padded length stays within the budget
            if batches[-1] and (len(batches[-1]) + 1) * len(waves[index]) > budget:
                batches.append([])
            batches[-1].append(index)
        transcripts: dict[int, str] = {}
        for batch in batches:
            texts = self.transcribe_waves([waves[i] for i in batch], decoding)
            transcripts.update(zip(batch, texts, strict=True))
        return [transcripts[i] for i in range(len(waves))]
