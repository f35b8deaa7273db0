"""Captioning image files with a network whose source is images, and the attention overlays."""

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from encdec.data.images import IMAGE_ERRORS, image_array, image_transform, read_image_file
from encdec.data.tokenization import token_text
from encdec.decoding.search import DecodingConfig
from encdec.inference.loading import load_network
from encdec.networks.network import Network
from encdec.networks.text_to_speech import TextToSpeech
from encdec.utils.errors import UserError
from encdec.utils.plots import save_attention_overlay


def image_mask(images: torch.Tensor) -> torch.Tensor:
    # images: (B, 3, H, W) -> (B, 1): one image per row
    return images.new_ones(images.size(0), 1, dtype=torch.bool)


class Captioner:
    """A network (tokenizer attached) and how its training data prepared images (size and
    normalization), so image files are prepared the same way."""

    def __init__(self, network: Network, image_settings: dict[str, Any] | None) -> None:
        if network.tokenizer is None:
            raise RuntimeError("this network has no tokenizer attached (attach_tokenizer)")
        self.network, self.image_settings = network, image_settings

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> "Captioner":
        network, checkpoint = load_network(path, map_location)
        if isinstance(network, TextToSpeech):
            raise UserError(f"'{path}' holds a speech synthesizer: use python -m encdec.speak")
        if network.source_vocab_size is not None:
            raise UserError(f"'{path}' holds a model of text: use python -m encdec.translate")
        if network.frontend is not None:
            raise UserError(f"'{path}' holds a speech recognizer: use python -m encdec.transcribe")
        return cls(network, checkpoint.get("image_settings"))

    @property
    def decoding(self) -> DecodingConfig:
        return self.network.decoding

    @torch.no_grad()
    def caption(self, images: torch.Tensor, decoding: DecodingConfig | None = None) -> list[str]:
        """Normalized images (B, 3, H, W) -> their best captions."""
        network = self.network
        was_training = network.training
        network.eval()
        images = images.to(next(network.parameters()).device)
        hypotheses = network.generate(images, image_mask(images), decoding)
        network.train(was_training)
        return [network.tokenizer.decode_target(nbest[0].tokens) for nbest in hypotheses]

    def caption_files(
        self, paths: list[Path], decoding: DecodingConfig | None = None, batch_size: int = 32
    ) -> list[str]:
        """Image files -> their best captions, prepared as the training data's images were."""
        captions = []
        for start in range(0, len(paths), batch_size):
            captions += self.caption(self.read_images(paths[start : start + batch_size]), decoding)
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
        network = self.network
        was_training = network.training
        network.eval()
        images = self.read_images(paths).to(next(network.parameters()).device)
        hypotheses = network.greedy_with_attention(images, image_mask(images))
        network.train(was_training)
        results = []
        tokenizer = network.tokenizer
        for path, image, hypothesis in zip(paths, images, hypotheses, strict=True):
            words = [token_text(tokenizer.target, t) for t in hypothesis.tokens]
            weights = hypothesis.attention.float().cpu().numpy()[: len(words)]  # (T, N)
            caption = tokenizer.decode_target(hypothesis.tokens)
            png = out_dir / f"{path.stem}.png"
            pixels = image_array(image, self.image_settings)
            results.append((caption, save_attention_overlay(pixels, weights, words, png, caption)))
        return results


def _read_image(path: Path) -> Image.Image:
    try:
        return read_image_file(path)
    except IMAGE_ERRORS as error:
        raise UserError(f"cannot read image '{path}' ({error})") from None
