"""Learning-rate schedules as ``LRScheduler`` subclasses, so their state survives a resume.

Each multiplies the optimizer's base learning rate by a factor of the step number:
- ``inverse_sqrt``: linear warm-up to the base rate, then decay as 1/sqrt(step) (fairseq).
- ``noam``: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (Vaswani et al., 2017); the base
  rate acts as a scale factor (the paper's "lr" is 1 with Adam).
- ``cosine``: linear warm-up, then half a cosine down to ``min_ratio`` at ``total_steps``.
- ``constant``: the base rate throughout.

Only ``cosine`` needs the total number of steps; the others train under a time-only budget
(``trainer.max_time`` with no step or epoch limit), where Lightning's estimate is infinite.
"""

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from encdec.utils.errors import UserError

NEEDS_TOTAL_STEPS = frozenset({"cosine"})


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


def no_step_budget(name: str) -> UserError:
    """The one-line error for schedule ``name`` without a total number of steps."""
    return UserError(
        f"model.scheduler.name={name} needs a step budget: "
        "set trainer.max_steps or trainer.max_epochs"
    )


def check_step_budget(name: str, max_steps: int, max_epochs: int | None, max_time: Any) -> None:
    """Stop at start-up, before any data is read, when schedule ``name`` needs the total number
    of steps and the trainer settings give none. Lightning trains without a step or epoch limit
    when ``max_steps`` is -1 and ``max_epochs`` is -1, or null with ``max_time`` set (null
    alone means 1000 epochs)."""
    if name not in NEEDS_TOTAL_STEPS or max_steps != -1:
        return
    if max_epochs == -1 or (max_epochs is None and max_time is not None):
        raise no_step_budget(name)


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    total_steps: float,
    d_model: int,
    warmup_steps: int = 0,
    min_ratio: float = 0.0,
) -> LRScheduler:
    """A schedule by ``name``: inverse_sqrt, noam, cosine or constant. ``total_steps`` is the
    trainer's estimate of optimizer steps: infinite without a step or epoch limit, and -1 for
    an endless loader without ``max_steps`` (cases :func:`check_step_budget` cannot see in the
    config), so it is read only by the schedule that needs it."""
    if name == "inverse_sqrt":
        return InverseSqrtSchedule(optimizer, max(1, warmup_steps))
    if name == "noam":
        return NoamSchedule(optimizer, max(1, warmup_steps), d_model)
    if name == "cosine":
        if not 0 <= total_steps < math.inf:
            raise no_step_budget(name)
        return CosineSchedule(optimizer, warmup_steps, int(total_steps), min_ratio)
    if name == "constant":
        return ConstantSchedule(optimizer)
    raise ValueError(f"unknown scheduler '{name}'; choose inverse_sqrt, noam, cosine or constant")
