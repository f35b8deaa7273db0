"""A callback that kills its own process with SIGKILL (as ``kill -9`` would: no cleanup, no
checkpoint) at a chosen training step, for the resume tests. Added with
``+callbacks.crash._target_=tests.crash.KillAt +callbacks.crash.step=N``."""

import os
import signal

import lightning as L


class KillAt(L.Callback):
    def __init__(self, step: int, during: str = "train", rank: int | None = None) -> None:
        """Die when ``global_step == step``: before that training batch (``during=train``) or
        inside the first validation batch from that step on (``during=validation``); under
        DDP only the process of global rank ``rank`` dies (None: every rank)."""
        if during not in ("train", "validation"):
            raise ValueError(f"during={during!r}: train or validation")
        self.step, self.during, self.rank = step, during, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.rank not in (None, trainer.global_rank):
            return
        if self.during == "train" and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.rank not in (None, trainer.global_rank):
            return
        if self.during == "validation" and trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
