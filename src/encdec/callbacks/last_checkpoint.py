"""``last.ckpt`` often enough that a crash loses little, and before SLURM requeues a job."""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from encdec.launch.slurm import RequeueSignal


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every validation (at the epoch's end, once early stopping and the best
    checkpoint have seen it, when validating once per epoch) and every ``every_n_train_steps``
    training steps, so a crash loses at most that many steps. (Lightning's own ``save_last``
    writes it only when a new best checkpoint is saved.) When submitit's requeue signal arrives,
    also at the next point where one may be taken; then the signal goes on to submitit.

    A checkpoint taken after an epoch's last batch but before its validation resumes into an
    epoch count Lightning gets wrong (the resumed run trains one epoch too many), so no step
    checkpoint is taken at that batch: the end-of-epoch validation writes one a moment later."""

    def __init__(self, dirpath: str, every_n_train_steps: int) -> None:
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,  # overwrite last.ckpt, never last-v1.ckpt
        )
        self.requeue_signal = RequeueSignal()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == TrainerFn.FITTING:
            self.requeue_signal.install()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.requeue_signal.release()  # a signal held until now goes on (fit is over)
        super().teardown(trainer, pl_module, stage)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if batch_idx + 1 < trainer.num_training_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if self._requeue_requested(trainer):
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
                self.requeue_signal.release()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # validated once per epoch: after the validation, early stopping and best checkpoint
        if self._fitting(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            if self._requeue_requested(trainer):
                self.requeue_signal.release()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # validated within epochs (val_check_interval) or not every epoch
        if self._fitting(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            if self._requeue_requested(trainer):
                self.requeue_signal.release()

    def _requeue_requested(self, trainer: L.Trainer) -> bool:
        """Whether any rank holds a requeue signal (all ranks decide together, so that they
        all take the checkpoint at the same step)."""
        if not self.requeue_signal.installed:
            return False
        held = self.requeue_signal.pending is not None
        return trainer.strategy.reduce_boolean_decision(held, all=False)

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
