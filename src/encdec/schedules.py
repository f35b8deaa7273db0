"""Learning-rate schedules as ``LRScheduler`` subclasses, so their state survives a resume.

Each multiplies the optimizer's base learning rate by a factor of the step number:
- ``inverse_sqrt``: linear warm-up to the base rate, then decay as 1/sqrt(step) (fairseq).
- ``noam``: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (Vaswani et al., 2017); the base
  rate acts as a scale factor (the paper's "lr" is 1 with Adam).
- ``cosine``: linear warm-up, then half a cosine down to ``min_ratio`` at ``total_steps``.
- ``constant``: the base rate throughout.
"""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class _FactorSchedule(LRScheduler):
    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        step = max(self.last_epoch, 1)  # last_epoch counts optimizer steps here
        return [base * self.factor(step) for base in self.base_lrs]


class InverseSqrtSchedule(_FactorSchedule):
    def __init__(self, optimizer: Optimizer, warmup_steps: int, last_epoch: int = -1) -> None:
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return math.sqrt(self.warmup_steps / step)


class NoamSchedule(_FactorSchedule):
    def __init__(
        self, optimizer: Optimizer, warmup_steps: int, d_model: int, last_epoch: int = -1
    ) -> None:
        self.warmup_steps, self.d_model = warmup_steps, d_model
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return self.d_model**-0.5 * min(step**-0.5, step * self.warmup_steps**-1.5)


class CosineSchedule(_FactorSchedule):
    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int,
        min_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        progress = min(
            1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        )
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ConstantSchedule(_FactorSchedule):
    def factor(self, step: int) -> float:
        return 1.0


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    total_steps: int,
    d_model: int,
    warmup_steps: int = 0,
    min_ratio: float = 0.0,
) -> LRScheduler:
    """A schedule by ``name``: inverse_sqrt, noam, cosine or constant."""
    if name == "inverse_sqrt":
        return InverseSqrtSchedule(optimizer, max(1, warmup_steps))
    if name == "noam":
        return NoamSchedule(optimizer, max(1, warmup_steps), d_model)
    if name == "cosine":
        return CosineSchedule(optimizer, warmup_steps, total_steps, min_ratio)
    if name == "constant":
        return ConstantSchedule(optimizer)
    raise ValueError(f"unknown scheduler '{name}'; choose inverse_sqrt, noam, cosine or constant")
