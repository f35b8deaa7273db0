"""Dropout (Srivastava et al., 2014) with a cheap random mask on the CPU.

PyTorch's CPU dropout draws one 32-bit random number per element (``bernoulli_``): in a bf16
Transformer training step on the 2-core development machine that was 42% of the step's time.
Here one 64-bit random word makes the mask of 4 elements, 15 random bits each, so the drop
probability is rounded to a multiple of 1/32768 (0.1 becomes 0.100006). Kept elements are scaled
by 1 / (keep probability), as in ``nn.Dropout``. On other devices this is ``F.dropout`` (CUDA's
is a fused kernel).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

LANE_BITS = 15
LANE_VALUES = 1 << LANE_BITS


def keep_mask(shape: torch.Size, keep_threshold: int) -> torch.Tensor:
    """A bool CPU tensor of ``shape``, each element True with probability
    ``keep_threshold / 32768``, from the default generator."""
    numel = math.prod(shape)
    # random_() on int64 fills bits 0..62: each 16-bit lane has its low 15 bits random
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_()
    lanes = words.view(torch.int16)[:numel].view(shape)
    # <= threshold - 1: a threshold of 32768 (keep all) is no int16 and would wrap to -32768
    return (lanes & (LANE_VALUES - 1)) <= keep_threshold - 1


class Dropout(nn.Module):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.keep_threshold = round((1.0 - p) * LANE_VALUES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.keep_threshold == 0:
            return F.dropout(x, self.p, training=True)
        if self.keep_threshold == LANE_VALUES:  # p < 1/65536 rounds to 0: nothing to draw
            return x
        # the mask as 0/1 in x's dtype, through uint8 (8x faster than from bool to bf16); a bool
        # mask would be converted inside the product, and again in backward
        keep = keep_mask(x.shape, self.keep_threshold).view(torch.uint8).to(x.dtype)
        return (x * keep).mul_(LANE_VALUES / self.keep_threshold)

    def extra_repr(self) -> str:
        return f"p={self.p}"
