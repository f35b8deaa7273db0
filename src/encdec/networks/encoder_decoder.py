"""An encoder-decoder network composed from parts, each built by Hydra ``_target_`` from its own
config node (``model.net.encoder``, ``model.net.decoder``): token embeddings for a text source
and for the target, any encoder, any decoder, and the projection to the target vocabulary. A
plain ``nn.Module`` (no Lightning: translation starts in a fraction of the time).

The step interface search uses (``encdec.decoding.search``)::

    encode(src, src_mask)            -> memory     (the decoder's Memory)
    init_state(memory)               -> state
    step(prev_tokens, state, memory) -> logits (B, V), state, attention (B, S) | None
"""

import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import nn

from encdec.modules.embeddings import TokenEmbedding
from encdec.modules.interface import Decoder, Encoded, Reorderable
from encdec.networks.network import Network, TeacherForced
from encdec.utils.special_tokens import PAD_ID


def build_embeddings(
    source_vocab_size: int,
    target_vocab_size: int,
    dim: int,
    share: bool,
    scale: bool,
) -> tuple[TokenEmbedding, TokenEmbedding]:
    """Source and target embeddings; one shared table when ``share`` (joint vocabulary)."""
    source = TokenEmbedding(source_vocab_size, dim, PAD_ID, scale)
    if not share:
        return source, TokenEmbedding(target_vocab_size, dim, PAD_ID, scale)
    if source_vocab_size != target_vocab_size:
        raise ValueError(
            "model.net.share_embeddings needs a joint vocabulary "
            f"(source {source_vocab_size} != target {target_vocab_size} tokens)"
        )
    return source, source


def output_layer(features: int, vocab_size: int, tied_embedding: nn.Embedding | None) -> nn.Linear:
    """Projection to the target vocabulary, optionally sharing the target embedding's weights."""
    layer = nn.Linear(features, vocab_size, bias=False)
    if tied_embedding is not None:
        if tied_embedding.embedding_dim != features:
            raise ValueError(
                f"model.net.tie_output needs the decoder's output size {features} == "
                f"embedding size {tied_embedding.embedding_dim}"
            )
        layer.weight = tied_embedding.weight
    return layer


def takes_input_size(encoder: Callable[..., nn.Module]) -> bool:
    """Whether an encoder constructor reads vectors of a size the network gives it (a text
    source's embeddings, a front-end's frames); one without ``input_size`` reads the source as
    it comes (images, or token ids it embeds itself)."""
    return "input_size" in inspect.signature(encoder).parameters


class EncoderDecoder(Network):
    """``encoder`` and ``decoder`` are partial constructors (``_partial_: true``): the network
    gives the encoder its input size (``input_size``: the embedding size, for a text source;
    the front-end's ``output_size`` for audio; an image encoder takes none) and the decoder
    the target embedding and what the encoder gives (``memory_size``, ``memory_final``).
    ``frontend``: a partial constructor of the audio front-end (waveforms -> vectors), for a
    speech source. ``ctc``: a CTC output layer over the encoder states (blank = PAD), for
    hybrid CTC/attention training and joint decoding; with ``decoder=None`` the network is
    CTC only (an encoder and its CTC head, decoded by CTC's best path)."""

    def __init__(
        self,
        target_vocab_size: int,
        encoder: Callable[..., nn.Module],
        decoder: Callable[..., Decoder] | None,
        source_vocab_size: int | None = None,  # None: the source is not text (images)
        embedding_dim: int = 256,
        scale_embeddings: bool = False,
        share_embeddings: bool = False,
        tie_output: bool = False,
        teacher_forcing_ratio: float = 1.0,
        frontend: Callable[..., nn.Module] | None = None,
        ctc: bool = False,
    ) -> None:
        super().__init__(target_vocab_size, source_vocab_size)
        self.teacher_forcing_ratio = teacher_forcing_ratio
        self.frontend = None if frontend is None else frontend()
        if self.frontend is not None and source_vocab_size is not None:
            raise ValueError("model.net.frontend reads audio: the source is not text")
        embedded_here = source_vocab_size is not None and takes_input_size(encoder)
        if embedded_here:
            if decoder is None:  # encoder-only: no target side
                self.source_embedding = TokenEmbedding(
                    source_vocab_size, embedding_dim, PAD_ID, scale_embeddings
                )
            else:
                self.source_embedding, target_embedding = build_embeddings(
                    source_vocab_size, target_vocab_size, embedding_dim, share_embeddings,
                    scale_embeddings,
                )  # fmt: skip
            self.encoder = encoder(input_size=embedding_dim)
        else:
            if share_embeddings:
                raise ValueError("model.net.share_embeddings needs a source the network embeds")
            # images, audio through the front-end, or token ids the encoder embeds itself
            self.source_embedding = None
            self.encoder = (
                encoder()
                if self.frontend is None
                else encoder(input_size=self.frontend.output_size)
            )
            target_embedding = TokenEmbedding(
                target_vocab_size, embedding_dim, PAD_ID, scale_embeddings
            ) if decoder is not None else None  # fmt: skip
        self.ctc_head = nn.Linear(self.encoder.output_size, target_vocab_size) if ctc else None
        if decoder is None:  # CTC only: no target embedding, decoder or output projection
            if self.ctc_head is None:
                raise ValueError("model.net.decoder=null needs a CTC head: model.net.ctc=true")
            self.decoder, self.generator = None, None
            self.max_output_length = 1 << 30  # CTC emits at most one token per encoder state
        else:
            self.decoder = decoder(
                embedding=target_embedding,
                memory_size=self.encoder.output_size,
                memory_final=self.encoder.final_states,
            )
            self.generator = output_layer(
                self.decoder.output_size,
                target_vocab_size,
                target_embedding if tie_output else None,
            )
            self.max_output_length = self.decoder.max_output_length

    # ---- the step interface ----
    def encode_source(self, src: torch.Tensor, src_mask: torch.Tensor) -> Encoded:
        # src: token ids (B, S), images (B, 3, H, W) or waveforms (B, N); src_mask: (B, S | N)
        if self.frontend is not None:
            inputs, src_mask = self.frontend(src, src_mask)  # (B, S, D) frames, (B, S)
        elif self.source_embedding is not None:
            inputs = self.source_embedding(src)
        else:
            inputs = src
        return self.encoder(inputs, src_mask)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> Reorderable:
        return self.decoder.memory(self.encode_source(src, src_mask))  # the decoder's memory

    def ctc_log_probs(self, encoded: Encoded) -> torch.Tensor:
        """(B, S, V) fp32 log-probabilities of the CTC head at each encoder position."""
        if self.ctc_head is None:
            raise ValueError("this network has no CTC head (model.net.ctc=true adds one)")
        return torch.log_softmax(self.ctc_head(encoded.states).float(), dim=-1)

    def encode_with_ctc(
        self, src: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[Reorderable, torch.Tensor, torch.Tensor]:
        """The decoder's memory, the CTC log-probabilities (B, S, V) and each row's encoder
        length (B,): one encoder pass for joint CTC/attention search."""
        encoded = self.encode_source(src, src_mask)
        memory = None if self.decoder is None else self.decoder.memory(encoded)
        return memory, self.ctc_log_probs(encoded), encoded.mask.sum(1)

    def init_state(self, memory: Reorderable) -> Reorderable:
        return self.decoder.init_state(memory)

    def step(
        self, prev_tokens: torch.Tensor, state: Reorderable, memory: Reorderable
    ) -> tuple[torch.Tensor, Reorderable, torch.Tensor | None]:
        features, state, attention = self.decoder.step(prev_tokens, state, memory)
        return self.generator(features), state, attention  # logits: (B, V)

    def returning_attention(self) -> AbstractContextManager[None]:
        return self.decoder.returning_attention()

    # ---- training ----
    def teacher_forced(
        self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor
    ) -> TeacherForced:
        """Logits (B, T, V) for every target prefix, the decoder's attention (B, T, S) where
        it computes it in training, and the CTC head's log-probabilities where there is one.
        With ``teacher_forcing_ratio`` < 1 in training, each next input is the reference token
        with that probability, else the model's own previous prediction (scheduled sampling,
        through the step interface)."""
        encoded = self.encode_source(src, src_mask)
        ctc = (None, None) if self.ctc_head is None else (self.ctc_log_probs(encoded), encoded.mask)
        if self.decoder is None:
            return TeacherForced(None, None, *ctc)
        memory = self.decoder.memory(encoded)
        if self.training and self.teacher_forcing_ratio < 1.0:
            return TeacherForced(self._scheduled_sampling(tgt_in, memory), None, *ctc)
        features, attention = self.decoder(tgt_in, memory)
        return TeacherForced(self.generator(features), attention, *ctc)

    def _scheduled_sampling(self, tgt_in: torch.Tensor, memory: Reorderable) -> torch.Tensor:
        state, logits = self.init_state(memory), []
        prev = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            step_logits, state, _ = self.step(prev, state, memory)
            logits.append(step_logits)
            if t + 1 < tgt_in.size(1):
                use_reference = (
                    torch.rand(prev.shape, device=prev.device) < self.teacher_forcing_ratio
                )
                prev = torch.where(use_reference, tgt_in[:, t + 1], step_logits.argmax(-1))
        return torch.stack(logits, dim=1)
