"""Checkpoints a crash cannot corrupt, and resuming from them.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its target,
  flushes it to disk and renames it into place: a kill during the write leaves the previous
  ``last.ckpt`` intact, never a truncated one.
- :class:`LastCheckpoint` writes ``last.ckpt`` after every validation and every N training
  steps (except at an epoch's last batch, which Lightning cannot resume from exactly).
  In a submitit SLURM job it also holds back the requeue signal until it has written last.ckpt
  at the next step boundary (:class:`encdec.launch.slurm.RequeueSignal`).
- :func:`resume_checkpoint` picks the checkpoint a run continues from: ``ckpt_path=...``, or with
  ``resume=auto`` the run dir's ``checkpoints/last.ckpt`` when there is one. A job SLURM has
  requeued continues from that ``last.ckpt`` whatever ``resume`` says.
- :func:`keep_wandb_run_id` keeps the W&B run id in the run dir, so a resumed run logs into
  the same W&B run.
- :func:`check_resumable` refuses, in one line, a checkpoint this model cannot continue from
  (another network, another vocabulary, another format, or no training state).

What a checkpoint holds to continue exactly (bit for bit on CPU): weights, optimizer, LR
scheduler, precision plugin (AMP scaler), loop progress, callbacks (best checkpoints, early
stopping, time budget) — all saved by Lightning — plus, saved by encdec, the RNG states and
the bucketed sampler's position (``encdec.callbacks.exact_resume``, with
``encdec.data.batching.ResumableDataLoader``) and the best-so-far val metrics (``Seq2SeqModule``).
"""

import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig

from encdec.launch.slurm import RequeueSignal, slurm_restart_count
from encdec.networks.loading import read_checkpoint
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.config import flatten
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)

RESUME_MODES = (None, "auto")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the target's directory, fsync, then ``os.replace``
    (atomic on POSIX within one file system)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


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


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint ``trainer.fit`` continues from, if any: in a job SLURM requeued, the run
    dir's ``last.ckpt`` (before ``ckpt_path``, the checkpoint this run started from)."""
    resume = cfg.get("resume")
    if resume not in RESUME_MODES:
        raise UserError(f"resume={resume!r}: use resume=auto, or leave it null")
    last = output_dir / "checkpoints" / "last.ckpt"
    restarts = slurm_restart_count()
    if restarts and last.is_file():  # this very run, stopped by SLURM: continue it
        log.info("SLURM requeued this job (restart %d): continuing from %s", restarts, last)
        return str(last)
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    if resume == "auto":
        if last.is_file():
            log.info("resume=auto: continuing from %s", last)
            return str(last)
        log.info("resume=auto: no %s yet, starting from scratch", last)
    return None


def keep_wandb_run_id(cfg: DictConfig, output_dir: Path) -> None:
    """Give ``logger.wandb`` the run id stored in ``output_dir/wandb_id.txt`` (created on the
    first start; every DDP rank reads the same one). An explicit ``logger.wandb.id`` wins."""
    wandb = (cfg.get("logger") or {}).get("wandb")
    if wandb is None or wandb.get("id"):
        return
    path = output_dir / "wandb_id.txt"
    try:
        with path.open("x") as file:  # exclusive create: one job writes it
            file.write(uuid.uuid4().hex[:12])
    except FileExistsError:
        pass
    wandb.id = path.read_text().strip()


def first_difference(saved: dict[str, Any], built: dict[str, Any]) -> str | None:
    """The first dotted key whose value differs between two configs, or None."""
    saved, built = flatten(saved), flatten(built)
    return next(
        (k for k in sorted(saved.keys() | built.keys()) if saved.get(k) != built.get(k)), None
    )


def check_resumable(path: str, model: Seq2SeqModule) -> None:
    """One-line ``UserError`` unless ``path`` is a training checkpoint of this very network."""
    checkpoint = read_checkpoint(path)  # exists, loads with weights_only, is encdec, known format
    saved_net, built_net = checkpoint["encdec_model"]["net"], model.model_config["net"]
    key = first_difference(saved_net, built_net)
    if key is not None:
        saved, built = flatten(saved_net).get(key), flatten(built_net).get(key)
        raise UserError(
            f"ckpt_path '{path}' holds another network (model.net.{key}={saved!r}, this run "
            f"builds {built!r}; check model=...)"
        )
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise UserError(
            f"ckpt_path '{path}' has no training state (an averaged or exported checkpoint?): "
            "it can be evaluated, not resumed"
        )
    built_sizes = model.net.vocab_sizes()
    for name, saved_size in checkpoint["vocab_sizes"].items():
        if saved_size != built_sizes.get(name):
            raise UserError(
                f"ckpt_path '{path}' has {name}={saved_size}, but this run's tokenizer "
                f"gives {built_sizes.get(name)} (another corpus or data.tokenizer settings?)"
            )
