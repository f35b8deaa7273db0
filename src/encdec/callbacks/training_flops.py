"""Training FLOPs, counted and optionally budgeted: every training batch (forward, backward and
the optimizer step) runs under torch's ``FlopCounterMode``, which counts the FLOPs of matrix
products, convolutions and attention as they are dispatched (2 per multiply-add; elementwise
work is not counted). The running total is logged as ``train/flops``; with ``max_flops`` the
fit stops at the end of the batch that reaches it, so models of different speeds can be
compared at the same compute (``experiment=compare_paradigms_flops``). The total goes into
``train_flops.json`` in the run dir and into checkpoints, so a resumed fit keeps counting.

Counting costs time (each operator passes through the counter in Python): runs timed for speed
should leave this callback out.
"""

import json
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.flop_counter import FlopCounterMode

from encdec.utils.errors import UserError


class TrainingFlops(L.Callback):
    def __init__(self, max_flops: float | None = None) -> None:
        if max_flops is not None and max_flops <= 0:
            raise UserError(f"max_flops must be positive, got {max_flops}")
        self.max_flops = max_flops
        self.total = 0  # FLOPs of every training batch so far (this rank's)
        self.counter: FlopCounterMode | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.counter = FlopCounterMode(display=False)
        self.counter.__enter__()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # Lightning runs the optimizer step (and so backward) before this hook
        if self.counter is None:
            return
        self.counter.__exit__(None, None, None)
        self.total += self.counter.get_total_flops()
        self.counter = None
        pl_module.log("train/flops", float(self.total), reduce_fx="sum", sync_dist=True)
        if self.max_flops is not None and self.total * trainer.world_size >= self.max_flops:
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.counter is not None:  # a batch interrupted between the two hooks
            self.counter.__exit__(None, None, None)
            self.counter = None
        if trainer.is_global_zero:
            record = {"train_flops": self.total * trainer.world_size, "max_flops": self.max_flops}
            (Path(trainer.default_root_dir) / "train_flops.json").write_text(json.dumps(record))

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total = int(state_dict["total"])
