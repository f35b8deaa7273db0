"""Images in and out: decoding any file Pillow reads as RGB, the transforms that resize,
augment and normalize, and normalized tensors back to pixels (for sample pages and overlays)."""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

AUGMENTATIONS = ("crop", "flip", "jitter")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
WHITE = (255, 255, 255)
IMAGE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)  # what a bad file raises


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB; transparent pixels (RGBA, LA, palette transparency) become white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, I, F


def read_image_file(path: Path) -> Image.Image:
    """An image file decoded as RGB; raises one of ``IMAGE_ERRORS`` for a missing or bad file."""
    with Image.open(path) as image:
        image.load()  # decode now: a truncated file fails here, not later
        return to_rgb(image)


def image_transform(
    image_size: int, mean: list[float], std: list[float], augment: list[str] | None = None
) -> transforms.Compose:
    """Resize to a square (or, with ``crop``, a random 80-100% crop of it), optionally flip
    and jitter colours, then a normalized tensor (3, image_size, image_size)."""
    augment = augment or []
    size = (image_size, image_size)
    steps: list[Any] = []
    if "crop" in augment:
        steps.append(transforms.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1)))
    else:
        steps.append(transforms.Resize(size))
    if "flip" in augment:  # not for captions that say left and right
        steps.append(transforms.RandomHorizontalFlip())
    if "jitter" in augment:
        steps.append(transforms.ColorJitter(0.2, 0.2, 0.2))
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])


def image_array(image: torch.Tensor, settings: dict[str, Any] | None) -> np.ndarray:
    """A normalized image (3, H, W) -> uint8 (H, W, 3), undoing the data's ``mean``/``std``
    (without them, stretched to 0..1)."""
    image = image.detach().float().cpu()
    if settings is not None:
        mean = torch.tensor(settings["mean"]).view(3, 1, 1)
        std = torch.tensor(settings["std"]).view(3, 1, 1)
        image = image * std + mean
    else:
        image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-8)
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
