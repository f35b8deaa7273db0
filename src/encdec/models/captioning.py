"""Image captioners: an image encoder's grid of features is the memory a translation decoder
attends to, through the same step interface, search and shared base as the translators.

- ``AttentionCaptioner``: Show, Attend and Tell (Xu et al., 2015): the ``AttentionRNNDecoder``
  attends over the grid (Bahdanau by default), its initial state comes from the mean feature,
  an optional gate scales the context, and doubly stochastic attention regularization
  lambda * mean_cells (1 - sum_t alpha_t,cell)^2 is added to the training loss.
- ``TransformerCaptioner``: the ``TransformerDecoder`` with cross-attention over the projected
  grid and a KV cache for incremental decoding.

The source of a captioning batch is its images (B, 3, H, W) with a (B, 1) mask: one image per
row, so the search's output limit ``a * 1 + b`` is set by ``decoding.max_len_b`` alone.
"""

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from encdec.data.captioning import IMAGE_ERRORS, image_array, image_transform, read_image_file
from encdec.data.tokenization import PAD_ID, token_text
from encdec.decoding.search import DecodingConfig
from encdec.metrics.captions import CaptionMetrics
from encdec.models.base import Seq2SeqModule
from encdec.modules.embeddings import TokenEmbedding, build_positions
from encdec.modules.image_encoders import build_image_encoder
from encdec.modules.rnn import AttentionRNNDecoder, Bridge, RNNMemory
from encdec.modules.transformer import TransformerDecoder, TransformerMemory
from encdec.networks.attention import AttentionDecoderSteps
from encdec.networks.base import Seq2SeqNetwork, output_layer
from encdec.networks.transformer import TransformerDecoderSteps
from encdec.utils.errors import UserError
from encdec.utils.plots import save_attention_overlay


class CaptioningModule(Seq2SeqNetwork, Seq2SeqModule):
    """What every captioner shares: the image encoder, image batches, caption metrics."""

    not_hyperparameters = ("source_vocab_size",)  # None, set here: not a captioner's argument

    def __init__(
        self,
        target_vocab_size: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        label_smoothing: float,
        encoder: dict[str, Any],
    ) -> None:
        super().__init__(
            None,
            target_vocab_size,
            optimizer=optimizer,
            scheduler=scheduler,
            label_smoothing=label_smoothing,
        )
        encoder = dict(encoder)
        self.encoder_lr: float | None = encoder.pop("lr", None)  # None: the optimizer's lr
        self.image_encoder = build_image_encoder(**encoder)
        self.image_settings: dict[str, Any] | None = None  # the data's size and normalization

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], dict[str, Any]]]:
        """The image encoder with ``encoder.lr`` when set (a frozen encoder has none to train);
        the decoder with the optimizer's learning rate."""
        if self.encoder_lr is None:
            return super().parameter_groups()
        encoder = {id(p) for p in self.image_encoder.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        return [
            ([p for p in trainable if id(p) in encoder], {"lr": self.encoder_lr}),
            ([p for p in trainable if id(p) not in encoder], {}),
        ]

    def batch_source(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch["images"]  # (B, 3, H, W)
        return images, images.new_ones(images.size(0), 1, dtype=torch.bool)  # one image per row

    def batch_references(self, batch: dict[str, Any]) -> list[list[str]]:
        return batch["references"]

    def text_metrics(self) -> CaptionMetrics:
        return CaptionMetrics()

    def setup(self, stage: str) -> None:
        """From the data: CIDEr-D's document frequencies (the training references) and how
        images are prepared (kept in checkpoints, for ``caption_files``)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "training_references"):
            return  # compute() then says that CIDEr-D has no document frequencies
        references = datamodule.training_references()
        for metric in (self.val_text, self.test_text):
            metric.set_document_frequencies(references)
        self.image_settings = datamodule.image_settings()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["image_settings"] = self.image_settings

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.image_settings = checkpoint.get("image_settings")

    # A batch whose images all failed to decode is None (see data.captioning): nothing to do.
    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        return None if batch is None else super().training_step(batch, batch_idx)

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is not None:
            super().validation_step(batch, batch_idx)

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is not None:
            super().test_step(batch, batch_idx)

    @torch.no_grad()
    def caption(self, images: torch.Tensor, decoding: DecodingConfig | None = None) -> list[str]:
        """Normalized images (B, 3, H, W) -> their best captions."""
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer attached (attach_tokenizer)")
        was_training = self.training
        self.eval()
        images = images.to(self.device)
        hypotheses = self.generate(images, self.batch_source({"images": images})[1], decoding)
        self.train(was_training)
        return [self.tokenizer.decode_target(nbest[0].tokens) for nbest in hypotheses]

    def caption_files(
        self, paths: list[Path], decoding: DecodingConfig | None = None, batch_size: int = 32
    ) -> list[str]:
        """Image files -> their best captions, prepared as the training data's images were."""
        captions = []
        for start in range(0, len(paths), batch_size):
            images = self.read_images(paths[start : start + batch_size])
            captions += self.caption(images, decoding)
        return captions

    def read_images(self, paths: list[Path]) -> torch.Tensor:
        """Image files -> a normalized batch (B, 3, H, W), as the training data were prepared."""
        if self.image_settings is None:
            raise UserError("this checkpoint does not record its image size and normalization")
        transform = image_transform(**self.image_settings)
        return torch.stack([transform(_read_image(path)) for path in paths])

    @torch.no_grad()
    def overlay_attention(self, paths: list[Path], out_dir: Path) -> list[tuple[str, Path]]:
        """Greedy captions of image files with each word's attention laid over the image:
        (caption, ``out_dir/<image stem>.png``) per file."""
        was_training = self.training
        self.eval()
        images = self.read_images(paths).to(self.device)
        hypotheses = self.greedy_with_attention(*self.batch_source({"images": images}))
        self.train(was_training)
        results = []
        for path, image, hypothesis in zip(paths, images, hypotheses, strict=True):
            words = [token_text(self.tokenizer.target, t) for t in hypothesis.tokens]
            weights = hypothesis.attention.float().cpu().numpy()[: len(words)]  # (T, N)
            caption = self.tokenizer.decode_target(hypothesis.tokens)
            png = out_dir / f"{path.stem}.png"
            pixels = image_array(image, self.image_settings)
            results.append((caption, save_attention_overlay(pixels, weights, words, png, caption)))
        return results


def _read_image(path: Path) -> Image.Image:
    try:
        return read_image_file(path)
    except IMAGE_ERRORS as error:
        raise UserError(f"cannot read image '{path}' ({error})") from None


class AttentionCaptioner(AttentionDecoderSteps, CaptioningModule):
    def __init__(
        self,
        target_vocab_size: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        encoder: dict[str, Any],
        label_smoothing: float = 0.1,
        cell: str = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.3,
        attention: str = "bahdanau",
        context_gate: bool = True,
        attention_regularization: float = 1.0,
    ) -> None:
        super().__init__(target_vocab_size, optimizer, scheduler, label_smoothing, encoder)
        self.cell, self.num_layers = cell, num_layers
        self.attention_regularization = attention_regularization
        feature_size = self.image_encoder.output_size
        self.init_hidden = Bridge(feature_size, hidden_size)  # tanh(W mean feature)
        self.init_cell = Bridge(feature_size, hidden_size) if cell == "lstm" else None
        self.decoder = AttentionRNNDecoder(
            TokenEmbedding(target_vocab_size, embedding_dim, self.pad_id),
            cell,
            hidden_size,
            num_layers,
            dropout,
            feature_size,
            attention,
            input_feeding=False,
            context_gate=context_gate,
        )
        self.generator = output_layer(hidden_size, target_vocab_size, None)

    def encode(self, images: torch.Tensor, image_mask: torch.Tensor) -> RNNMemory:
        # images: (B, 3, H, W); image_mask: (B, 1), one image per row
        grid, grid_mask = self.image_encoder(images)  # (B, N, C), (B, N)
        mean = grid.mean(dim=1)  # (B, C)
        layers = mean.unsqueeze(0).expand(self.num_layers, -1, -1)  # (L, B, C)
        final = self.init_hidden(layers)
        if self.init_cell is not None:
            final = (final, self.init_cell(layers))
        return RNNMemory(grid, grid_mask, final, mean, self.decoder.project_keys(grid))

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        """Cross entropy plus the doubly stochastic attention penalty."""
        if batch is None:
            return None
        images, image_mask = self.batch_source(batch)
        features, weights = self.decoder(batch["target_in"], self.encode(images, image_mask))
        loss_sum, tokens = self.loss(self.generator(features), batch["target_out"])
        real_steps = (batch["target_out"] != PAD_ID).unsqueeze(2)  # (B, T, 1)
        attention_per_cell = (weights * real_steps).sum(dim=1)  # (B, N)
        penalty = ((1.0 - attention_per_cell) ** 2).mean()
        cross_entropy = loss_sum / tokens
        loss = cross_entropy + self.attention_regularization * penalty
        batch_size = images.size(0)
        self.log("train/loss", cross_entropy, prog_bar=True, batch_size=batch_size)
        self.log("train/attention_penalty", penalty, batch_size=batch_size)
        return loss


class TransformerCaptioner(TransformerDecoderSteps, CaptioningModule):
    def __init__(
        self,
        target_vocab_size: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        encoder: dict[str, Any],
        label_smoothing: float = 0.1,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        decoder_layers: int = 3,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: str = "sinusoidal",
        max_positions: int = 256,
        norm_first: bool = True,
        tie_output: bool = True,
    ) -> None:
        super().__init__(target_vocab_size, optimizer, scheduler, label_smoothing, encoder)
        self.d_model, self.num_heads = d_model, num_heads
        self.max_output_length = max_positions - 1  # BOS takes position 0
        self.grid_projection = nn.Sequential(
            nn.Linear(self.image_encoder.output_size, d_model), nn.LayerNorm(d_model)
        )
        embedding = TokenEmbedding(target_vocab_size, d_model, self.pad_id, scale=True)
        self.decoder = TransformerDecoder(
            embedding,
            build_positions(positions, d_model, max_positions),
            decoder_layers,
            dim=d_model,
            num_heads=num_heads,
            ff_dim=ff_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            norm_first=norm_first,
        )
        self.generator = output_layer(d_model, target_vocab_size, embedding if tie_output else None)

    def encode(self, images: torch.Tensor, image_mask: torch.Tensor) -> TransformerMemory:
        # images: (B, 3, H, W); image_mask: (B, 1), one image per row
        grid, grid_mask = self.image_encoder(images)  # (B, N, C), (B, N)
        states = self.grid_projection(grid)  # (B, N, D)
        return TransformerMemory(states, grid_mask, self.decoder.cross_keys_values(states))
