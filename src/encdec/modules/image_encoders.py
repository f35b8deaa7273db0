"""Image encoders that turn images (B, 3, H, W) into a grid of features for the decoders.

Every encoder returns ``Encoded``: states (B, N, D) over the N = H' x W' cells of its output
grid and a mask (B, N), all True, so any decoder attends over images exactly as over source
tokens. 2-D sinusoidal positions (row and column halves) are added to every grid, so decoders
can tell where a cell is ("left of") even where attention is order-blind.

- ``SmallCNN``: a small CNN trained from scratch (conv-BN-ReLU-maxpool stages);
- ``ResNetEncoder``: a torchvision ResNet without its pooling and classifier (``pretrained`` loads
  torchvision's ImageNet weights when they are available; ``freeze`` keeps them fixed, and
  ``feature_cache`` then computes each image's features once: ``feature_cache.py``);
- ``PatchEncoder``: a ViT-style patch encoder: patch embedding, then Transformer encoder layers (the
  translation encoder's ``EncoderLayer``).
"""

import torch
import torchvision
from torch import nn

from encdec.modules.dropout import Dropout
from encdec.modules.embeddings import SinusoidalPositions
from encdec.modules.feature_cache import FeatureCache, weights_hash
from encdec.modules.interface import Encoded
from encdec.modules.transformer import EncoderLayer, padding_mask
from encdec.utils.errors import UserError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


class GridPositions(nn.Module):
    """Adds 2-D sine/cosine positions: the first half of the channels encode the row, the
    second half the column (the 1-D sinusoidal table of ``embeddings``)."""

    def __init__(self, dim: int, max_side: int = 256) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"grid positions need a feature size divisible by 4, got {dim}")
        self.table = SinusoidalPositions(dim // 2, max_side)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        # grid: (B, D, H, W) -> features (B, H*W, D) with positions added
        _, dim, height, width = grid.shape
        rows = self.table(height)[:, None, :].expand(height, width, dim // 2)  # (H, W, D/2)
        columns = self.table(width)[None, :, :].expand(height, width, dim // 2)
        positions = torch.cat([rows, columns], dim=-1).reshape(height * width, dim)
        return grid.flatten(2).transpose(1, 2) + positions.to(grid.dtype)


def _all_cells(features: torch.Tensor) -> Encoded:
    # features: (B, N, D) -> with mask (B, N), True everywhere: images have no padding
    return Encoded(features, features.new_ones(features.shape[:2], dtype=torch.bool))


class SmallCNN(nn.Module):
    """Stages of 3x3 conv, BatchNorm, ReLU and 2x2 max-pooling, one stage per channel count:
    a 64 x 64 image through channels [16, 32, 64] becomes an 8 x 8 grid of 64 features."""

    final_states = False

    def __init__(self, channels: list[int], dropout: float = 0.0) -> None:
        super().__init__()
        stages, inputs = [], 3
        for outputs in channels:
            stages += [
                nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
                nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            inputs = outputs
        self.stages = nn.Sequential(*stages)
        self.dropout = Dropout(dropout)
        self.positions = GridPositions(inputs)
        self.output_size = inputs

    def forward(self, images: torch.Tensor, image_mask: torch.Tensor | None = None) -> Encoded:
        # images: (B, 3, H, W) -> states (B, N, C), mask (B, N)
        return _all_cells(self.dropout(self.positions(self.stages(images))))


class ResNetEncoder(nn.Module):
    """A torchvision ResNet's convolutional trunk: (B, 3, H, W) -> (B, H/32 * W/32, C)."""

    final_states = False

    def __init__(
        self,
        name: str = "resnet18",
        pretrained: bool = False,
        freeze: bool = False,
        feature_cache: str | None = None,
    ) -> None:
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f"unknown resnet '{name}'; choose one of {', '.join(RESNETS)}")
        if freeze and not pretrained:
            raise ValueError("freeze: true keeps random weights fixed; set pretrained: true")
        if feature_cache and not freeze:
            raise ValueError("feature_cache needs freeze: true (trained weights change features)")
        network = getattr(torchvision.models, name)(weights=None)
        if pretrained:
            network.load_state_dict(_pretrained_weights(name))
        self.trunk = nn.Sequential(*list(network.children())[:-2])  # without avgpool and fc
        self.frozen = freeze
        if freeze:
            self.trunk.requires_grad_(False)
        self.output_size = network.fc.in_features
        self.positions = GridPositions(self.output_size)
        self.cache = None
        if feature_cache:  # "memory", or a directory shared by runs
            directory = None if feature_cache == "memory" else feature_cache
            self.cache = FeatureCache(f"{name}-{weights_hash(self.trunk)}", directory)

    def train(self, mode: bool = True) -> "ResNetEncoder":
        super().train(mode)
        if self.frozen:  # frozen BatchNorm statistics stay the pretrained ones
            self.trunk.eval()
        return self

    def forward(self, images: torch.Tensor, image_mask: torch.Tensor | None = None) -> Encoded:
        # images: (B, 3, H, W) -> states (B, N, C), mask (B, N)
        trunk = (
            self.trunk(images) if self.cache is None else self.cache.features(images, self.trunk)
        )
        return _all_cells(self.positions(trunk))


def _pretrained_weights(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name`` (from the torch hub cache, or downloaded)."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=False)
    except Exception as error:  # offline (no cached file, no network), or a broken download
        file_name = weights.url.rsplit("/", 1)[-1]
        raise UserError(
            f"pretrained weights for {name} are unavailable ({type(error).__name__}): put "
            f"torchvision's {file_name} into {torch.hub.get_dir()}/checkpoints or set "
            "model.encoder.pretrained=false"
        ) from None


class PatchEncoder(nn.Module):
    """ViT-style: non-overlapping ``patch_size`` patches embedded by one strided convolution,
    grid positions added, then Transformer encoder layers (pre-norm, with a final LayerNorm)."""

    final_states = False

    def __init__(
        self,
        patch_size: int = 8,
        dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        ff_dim: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.positions = GridPositions(dim)
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, num_heads, ff_dim, dropout, 0.0, norm_first=True)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(dim)
        self.output_size = dim

    def forward(self, images: torch.Tensor, image_mask: torch.Tensor | None = None) -> Encoded:
        # images: (B, 3, H, W) -> states (B, N, D) with N = (H / patch) * (W / patch), mask
        x = self.dropout(self.positions(self.patch_embedding(images)))
        mask = _all_cells(x).mask
        for layer in self.layers:
            x = layer(x, padding_mask(mask))
        return Encoded(self.final_norm(x), mask)
