"""Tacotron 2's post-net (Shen et al. 2018): five 1-D convolutions over the whole predicted
spectrogram that add a residual correction, so each frame is refined with its neighbours on both
sides (the decoder saw only the past)."""

import torch
from torch import nn

from encdec.modules.dropout import Dropout


class PostNet(nn.Module):
    def __init__(
        self,
        n_mels: int,
        channels: int = 256,
        num_layers: int = 5,
        kernel_size: int = 5,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        sizes = [n_mels] + [channels] * (num_layers - 1) + [n_mels]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers += [nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2), nn.BatchNorm1d(b)]
            if i < num_layers - 1:  # tanh on all but the last
                layers.append(nn.Tanh())
            layers.append(Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # frames: (B, T, M), mask: (B, T) True = a real frame -> refined frames (B, T, M)
        keep = mask.unsqueeze(-1).to(frames.dtype)
        residual = self.layers((frames * keep).transpose(1, 2)).transpose(1, 2)
        return (frames + residual) * keep
