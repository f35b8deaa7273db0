"""Learning-rate schedules as ``LRScheduler`` subclasses, so their state survives a resume.

Each multiplies the optimizer's base learning rate by a factor of the step number
(``conf/model/scheduler`` has one config per class, ``_partial_``: the module gives the
optimizer, and ``total_steps`` to a schedule that takes it):
- ``InverseSqrtSchedule``: linear warm-up to the base rate, then decay as 1/sqrt(step) (fairseq).
- ``NoamSchedule``: d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (Vaswani et al., 2017);
  the base rate acts as a scale factor (the paper's "lr" is 1 with Adam).
- ``CosineSchedule``: linear warm-up, then half a cosine down to ``min_ratio`` at
  ``total_steps``.
- ``ConstantSchedule``: linear warm-up (none by default), then the base rate.

Only ``CosineSchedule`` needs the total number of steps; the others train under a time-only
budget (``trainer.max_time`` with no step or epoch limit), where Lightning's estimate is
infinite.
"""

import inspect
import math
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from encdec.utils.errors import UserError


class _FactorSchedule(LRScheduler):
    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        step = max(self.last_epoch, 1)  # last_epoch counts optimizer steps here
        return [base * self.factor(step) for base in self.base_lrs]


class InverseSqrtSchedule(_FactorSchedule):
    def __init__(self, optimizer: Optimizer, warmup_steps: int, last_epoch: int = -1) -> None:
        self.warmup_steps = max(1, warmup_steps)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return math.sqrt(self.warmup_steps / step)


class NoamSchedule(_FactorSchedule):
    def __init__(
        self, optimizer: Optimizer, warmup_steps: int, d_model: int, last_epoch: int = -1
    ) -> None:
        self.warmup_steps, self.d_model = max(1, warmup_steps), d_model
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
    def __init__(self, optimizer: Optimizer, warmup_steps: int = 0, last_epoch: int = -1) -> None:
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        return min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0


def takes_keyword(function: Callable[..., Any], name: str) -> bool:
    """Whether ``function`` (a class, or a partial constructor of one) takes keyword ``name``:
    a schedule ``total_steps``, an optimizer ``fused``."""
    return name in inspect.signature(getattr(function, "func", function)).parameters


NO_STEP_BUDGET = (
    "model.scheduler={} needs a step budget: set trainer.max_steps or trainer.max_epochs"
)


def check_step_budget(
    schedule: Callable[..., Any], max_steps: int, max_epochs: int | None, max_time: Any
) -> None:
    """Stop at start-up, before any data is read, when the schedule needs the total number of
    steps and the trainer settings give none. Lightning trains without a step or epoch limit
    when ``max_steps`` is -1 and ``max_epochs`` is -1, or null with ``max_time`` set (null
    alone means 1000 epochs)."""
    if not takes_keyword(schedule, "total_steps") or max_steps != -1:
        return
    if max_epochs == -1 or (max_epochs is None and max_time is not None):
        raise UserError(NO_STEP_BUDGET.format(schedule.__name__))
