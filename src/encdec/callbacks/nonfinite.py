"""Skip optimizer steps whose gradients are not finite; stop after too many in a row.

A NaN/inf loss (or an overflow in backward) gives NaN/inf gradients. Before gradient clipping and
the optimizer step, this callback checks the total gradient norm; if it is not finite, every
gradient is dropped (``grad = None``), so the optimizer leaves every weight and its moments as
they were: the weights never become NaN, and neither can ``best.ckpt``. Skipped steps are
counted in ``train/skipped_steps``; ``max_consecutive`` skips in a row end training with a clear
error. Under ``16-mixed`` precision the gradient scaler already skips such steps, so this does
nothing there.
"""

import logging
from typing import Any

import lightning as L
import torch

from encdec.utils.errors import UserError

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """Too many optimizer steps in a row had non-finite gradients."""


class NonFiniteGuard(L.Callback):
    def __init__(self, max_consecutive: int = 10) -> None:
        if max_consecutive < 1:
            raise UserError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.skipped = 0  # whole run
        self.consecutive = 0

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if trainer.precision == "16-mixed":
            return
        gradients = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not gradients or torch.nn.utils.get_total_norm(gradients).isfinite():
            self.consecutive = 0
            return
        pl_module.zero_grad(set_to_none=True)  # the optimizer skips parameters without a grad
        self.skipped += 1
        self.consecutive += 1
        log.warning(
            "step %d: non-finite loss or gradients, step skipped (%d in a row, %d in all)",
            trainer.global_step,
            self.consecutive,
            self.skipped,
        )
        pl_module.log("train/skipped_steps", float(self.skipped))
        if self.consecutive >= self.max_consecutive:
            raise TrainingDiverged(
                f"training diverged: {self.consecutive} steps in a row had a non-finite loss "
                f"or gradients (step {trainer.global_step}); lower model.optimizer.lr, use "
                "fp32 or bf16 precision, or resume from an earlier checkpoint"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict["skipped"]
        self.consecutive = state_dict["consecutive"]
