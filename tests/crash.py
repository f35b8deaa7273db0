"""Callbacks for the resume tests: one that kills its own process with SIGKILL (as ``kill -9``
would: no cleanup, no checkpoint) at a chosen training step, added with
``+callbacks.crash._target_=tests.crash.KillAt +callbacks.crash.step=N``; one that pauses a
SLURM job until the test has sent it the requeue signal."""

import os
import signal
import time
from pathlib import Path

import lightning as L

from encdec.callbacks.last_checkpoint import LastCheckpoint
from encdec.launch.slurm import slurm_restart_count


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


class PauseForRequeueSignal(L.Callback):
    """In a SLURM job's first run, wait before training step ``step`` until the requeue signal
    has arrived (the test sends it), so that the job checkpoints at a known step and requeues;
    a requeued run (``SLURM_RESTART_COUNT`` > 0) does not wait. Waits at most ``timeout_s``."""

    def __init__(self, step: int, timeout_s: float = 120.0) -> None:
        self.step, self.timeout_s = step, timeout_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step or slurm_restart_count() > 0:
            return
        last = next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint))
        (Path(trainer.default_root_dir) / "paused").touch()
        deadline = time.monotonic() + self.timeout_s
        while last.requeue_signal.pending is None and time.monotonic() < deadline:
            time.sleep(0.05)


class RaiseAt(L.Callback):
    """Raise an ordinary exception before training step ``step`` (a bug in a job)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"boom at step {self.step}")
