"""A frozen image encoder's features, computed once per image instead of every epoch.

A frozen pretrained trunk (eval mode, no gradients) maps the same image to the same features,
so they can be kept: in memory for the run, and optionally on disk, where later runs (a sweep's
other jobs) find them. Features are keyed by a hash of the prepared image tensor, under a
namespace that hashes the trunk's weights, so a changed image size, normalization or set of
weights never reuses stale features. With training-time augmentation every view is a new
image: set ``data.augment=[]`` for the cache to help.
"""

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def weights_hash(module: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def image_key(image: torch.Tensor) -> str:
    # image: (3, H, W) as the encoder receives it
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FeatureCache:
    """Features (C, H', W') of images, in memory and, with ``directory``, on disk (float16)."""

    def __init__(self, namespace: str, directory: str | None = None) -> None:
        self.memory: dict[str, torch.Tensor] = {}
        self.directory = Path(directory) / namespace if directory else None
        self.computed = 0  # images the trunk actually ran on (for tests and logs)

    def features(
        self, images: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        # images: (B, 3, H, W) -> features (B, C, H', W'), computing only the missing ones
        keys = [image_key(image) for image in images]
        missing = [i for i, key in enumerate(keys) if not self._lookup(key)]
        if missing:
            with torch.no_grad():
                computed = compute(images[missing])
            self.computed += len(missing)
            for i, features in zip(missing, computed, strict=True):
                self._store(keys[i], features)
        stacked = torch.stack([self.memory[key] for key in keys])
        return stacked.to(device=images.device, dtype=images.dtype)

    def _lookup(self, key: str) -> bool:
        if key in self.memory:
            return True
        path = self._path(key)
        if path is not None and path.is_file():
            self.memory[key] = torch.load(path, weights_only=True)
            return True
        return False

    def _store(self, key: str, features: torch.Tensor) -> None:
        features = features.detach().to("cpu", torch.float16).clone()
        self.memory[key] = features
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(handle)
        torch.save(features, temporary)
        os.replace(temporary, path)  # parallel jobs never read a half-written file

    def _path(self, key: str) -> Path | None:
        return self.directory / key[:2] / f"{key}.pt" if self.directory else None
