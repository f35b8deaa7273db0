"""An exponential moving average (EMA) of the weights, evaluated in place of the weights.

After every optimizer step the average moves towards the weights:
``average <- decay_t * average + (1 - decay_t) * weights`` (Polyak averaging with exponential
forgetting, as in most NMT and ASR toolkits). With ``warmup`` the decay grows with the number
of updates n, ``decay_t = min(decay, (1 + n) / (10 + n))``, so the average of a short run is not
dominated by its first, untrained weights.

The average is evaluated like an averaged checkpoint (Lightning's ``WeightAveraging`` does the
swapping): validation runs on it, so checkpoints are selected by its val metric; checkpoints
hold it as their ``state_dict`` (the raw weights under ``current_model_state``, for resuming);
and when training ends the network takes its values, so the test stage, ``encdec.evaluate``
and ``encdec.translate`` all use the average.
"""

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from encdec.utils.errors import UserError


class ExponentialMovingAverage(WeightAveraging):
    def __init__(self, decay: float = 0.999, warmup: bool = True, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise UserError(f"callbacks.ema.decay must be in [0, 1), got {decay}")
        super().__init__(use_buffers=True, multi_avg_fn=self.update_average)
        self.decay, self.warmup, self.start_step = decay, warmup, start_step

    def decay_after(self, updates: int) -> float:
        """The decay of the update that follows ``updates`` earlier ones."""
        return min(self.decay, (1 + updates) / (10 + updates)) if self.warmup else self.decay

    def update_average(
        self, averages: list[torch.Tensor], weights: list[torch.Tensor], updates: torch.Tensor
    ) -> None:
        """One update of tensors of one device and dtype (integer buffers are copied)."""
        if not averages[0].is_floating_point():
            torch._foreach_copy_(averages, weights)
            return
        torch._foreach_lerp_(averages, weights, 1.0 - self.decay_after(int(updates)))

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """After every optimizer step from ``start_step`` on (never per epoch)."""
        return step_idx is not None and step_idx >= self.start_step

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resuming a fit restores the weights and the average; a checkpoint loaded to test
        or validate keeps the average it holds as its ``state_dict`` (Lightning's callback would
        load the raw weights over it)."""
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
