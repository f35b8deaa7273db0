"""Text to speech as an encoder-decoder with a continuous output (Tacotron 2, Shen et al. 2018;
Transformer TTS, Li et al. 2019): characters -> any encoder -> any decoder, fed its previous
spectrogram frame through a pre-net where a text decoder reads its previous token -> ``r`` log-mel
frames and a stop logit per step -> a post-net that refines the whole spectrogram.

The decoders are the text decoders themselves (``AttentionRNNDecoder``, with location-sensitive
attention for Tacotron; ``TransformerDecoder``), built with the pre-net as their "embedding". The
mel spectrogram is the recognizer's (``LogMelSpectrogram``: 80 bins, 25 ms / 10 ms), normalized
per bin by the training data's mean and standard deviation (``set_normalization``; kept in the
checkpoint). The step interface is the one search uses, with frames for tokens::

    encode(src, src_mask)           -> memory
    init_state(memory)              -> state
    step(prev_frame, state, memory) -> FrameGroup (r frames, stop logit), state, attention | None

Synthesis (``decoding.continuous``) is greedy until the stop probability passes a threshold or a
length limit: beam search is for discrete outputs, and asking for it is an error.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NamedTuple

import torch
from torch import nn

from encdec.decoding.continuous import Synthesized, synthesize_greedy
from encdec.decoding.search import DecodingConfig, Hypothesis
from encdec.modules.audio_frontend import LogMelSpectrogram
from encdec.modules.embeddings import TokenEmbedding
from encdec.modules.interface import Decoder, Reorderable
from encdec.modules.postnet import PostNet
from encdec.modules.prenet import PreNet
from encdec.networks.network import Network
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import PAD_ID


class FrameGroup(NamedTuple):
    """What one decoder step predicts."""

    frames: torch.Tensor  # (B, r, M) normalized log-mel frames
    stop_logit: torch.Tensor  # (B,) the logit that the utterance ends within these frames


class SynthesisOutput(NamedTuple):
    """What the network computes for a training batch (teacher forcing)."""

    frames: torch.Tensor  # (B, T, M) before the post-net, normalized
    refined: torch.Tensor  # (B, T, M) after it
    stop_logits: torch.Tensor  # (B, T / r)
    attention: torch.Tensor | None  # (B, T / r, S) where the decoder attends in training
    target: torch.Tensor  # (B, T, M) the reference frames, normalized, padded to a multiple of r
    frame_mask: torch.Tensor  # (B, T) True = a real frame
    step_mask: torch.Tensor  # (B, T / r) True = a step holding a real frame


class TextToSpeech(Network):
    """``encoder``/``decoder``: partial constructors as in ``EncoderDecoder`` (the decoder gets
    the pre-net as its ``embedding``); ``prenet``/``postnet``: partial constructors of
    ``PreNet``/``PostNet``; ``frames_per_step``: Tacotron's reduction factor r. A row may have
    ``frames_per_token`` frames per character, at most ``max_frames``; synthesis refuses texts
    longer than ``max_characters``."""

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        encoder: Callable[..., nn.Module],
        decoder: Callable[..., Decoder],
        prenet: Callable[..., PreNet],
        postnet: Callable[..., PostNet],
        embedding_dim: int = 256,
        sample_rate: int = 16000,
        n_mels: int = 80,
        frames_per_step: int = 2,
        max_frames: int = 1500,
        frames_per_token: float = 20.0,
        stop_threshold: float = 0.5,
        max_characters: int = 400,
    ) -> None:
        super().__init__(target_vocab_size, source_vocab_size)
        if frames_per_step < 1:
            raise UserError(f"model.net.frames_per_step={frames_per_step} must be 1 or more")
        self.mel = LogMelSpectrogram(sample_rate, n_mels)
        self.sample_rate, self.n_mels, self.frames_per_step = sample_rate, n_mels, frames_per_step
        self.source_embedding = TokenEmbedding(source_vocab_size, embedding_dim, PAD_ID)
        self.encoder = encoder(input_size=embedding_dim)
        self.decoder = decoder(
            embedding=prenet(n_mels=n_mels),
            memory_size=self.encoder.output_size,
            memory_final=self.encoder.final_states,
        )
        self.frame_head = nn.Linear(self.decoder.output_size, frames_per_step * n_mels)
        self.stop_head = nn.Linear(self.decoder.output_size, 1)
        self.postnet = postnet(n_mels=n_mels)
        self.register_buffer("mel_mean", torch.zeros(n_mels))  # the training data's, per bin
        self.register_buffer("mel_std", torch.ones(n_mels))
        self.register_buffer("normalized", torch.tensor(False))  # set_normalization was called
        self.max_frames, self.frames_per_token = max_frames, frames_per_token
        self.stop_threshold = stop_threshold
        self.max_characters = max_characters  # the longest text synthesis takes
        self.max_output_length = min(max_frames, self.decoder.max_output_length * frames_per_step)
        self.frontend, self.ctc_head = None, None  # the source is text; no CTC

    # ---- the spectrogram ----
    def log_mel(self, audio: torch.Tensor, audio_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, N) waveforms with their sample mask -> log-mel (B, T, M) and frame mask (B, T)."""
        return self.mel(audio, audio_mask)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The per-bin mean and standard deviation (M,) of the training data's log-mel."""
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp(min=1e-3))
        self.normalized.fill_(True)

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.mel_mean) / self.mel_std

    def denormalize(self, frames: torch.Tensor) -> torch.Tensor:
        return frames * self.mel_std + self.mel_mean

    # ---- the step interface ----
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Reorderable:
        # src: (B, S) character ids -> the decoder's memory
        return self.decoder.memory(self.encoder(self.source_embedding(src), src_mask))

    def init_state(self, memory: Reorderable) -> Reorderable:
        return self.decoder.init_state(memory)

    def _heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # features (..., F) -> frames (..., r, M), stop logits (...)
        frames = self.frame_head(features).unflatten(-1, (self.frames_per_step, self.n_mels))
        return frames, self.stop_head(features).squeeze(-1)

    def step(
        self, prev_frame: torch.Tensor, state: Reorderable, memory: Reorderable
    ) -> tuple[FrameGroup, Reorderable, torch.Tensor | None]:
        # prev_frame: (B, M) normalized (zeros at the start) -> r frames and a stop logit
        features, state, attention = self.decoder.step(prev_frame, state, memory)
        return FrameGroup(*self._heads(features)), state, attention

    def refine(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The post-net's refinement of whole spectrograms (B, T, M) with their mask (B, T)."""
        return self.postnet(frames, mask)

    def returning_attention(self) -> AbstractContextManager[None]:
        return self.decoder.returning_attention()

    # ---- training ----
    def teacher_forced(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
    ) -> SynthesisOutput:
        """Every step fed the reference's previous frame: src (B, S) ids, audio (B, N)."""
        log_mel, frame_mask = self.log_mel(audio, audio_mask)  # (B, T, M), (B, T)
        r = self.frames_per_step
        steps = -(-log_mel.size(1) // r)
        padding = steps * r - log_mel.size(1)
        target = nn.functional.pad(self.normalize(log_mel), (0, 0, 0, padding))  # (B, T', M)
        frame_mask = nn.functional.pad(frame_mask, (0, padding))
        target = target * frame_mask.unsqueeze(-1)
        # step t reads the last frame of step t - 1's group; step 0 a frame of zeros
        previous = target[:, r - 1 :: r][:, :-1]  # (B, steps - 1, M)
        decoder_in = torch.cat([torch.zeros_like(target[:, :1]), previous], dim=1)
        memory = self.encode(src, src_mask)
        features, attention = self.decoder(decoder_in, memory)  # (B, steps, F)
        groups, stop_logits = self._heads(features)  # (B, steps, r, M), (B, steps)
        frames = groups.flatten(1, 2)  # (B, T', M)
        refined = self.refine(frames, frame_mask)
        step_mask = frame_mask[:, ::r]
        return SynthesisOutput(
            frames, refined, stop_logits, attention, target, frame_mask, step_mask
        )

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, audio, audio_mask):
        return self.teacher_forced(src, src_mask, audio, audio_mask)

    # ---- synthesis ----
    def frame_limits(self, src_mask: torch.Tensor) -> torch.Tensor:
        """(B,) the most frames each row may have: ``frames_per_token`` per character,
        within ``max_frames``."""
        limits = torch.ceil(src_mask.sum(1) * self.frames_per_token).long()
        return limits.clamp(max=self.max_output_length)

    def synthesize(
        self, src: torch.Tensor, src_mask: torch.Tensor, keep_alignment: bool = False
    ) -> list[Synthesized]:
        """Greedy synthesis of each row: its log-mel frames (T, M), denormalized."""
        return synthesize_greedy(
            self, src, src_mask, self.frame_limits(src_mask), self.stop_threshold, keep_alignment
        )

    def generate(
        self, src: torch.Tensor, src_mask: torch.Tensor, decoding: DecodingConfig | None = None
    ) -> list[list[Hypothesis]]:
        raise UserError(
            "speech synthesis outputs spectrogram frames: it synthesizes greedily until its stop "
            "token (beam search and sampling are for discrete outputs)"
        )
