"""Which checkpoint a run continues from: ``ckpt_path=...``, or with ``resume=auto`` the run
dir's ``checkpoints/last.ckpt`` when there is one. A job SLURM has requeued continues from that
``last.ckpt`` whatever ``resume`` says."""

import logging
from pathlib import Path

from omegaconf import DictConfig

from encdec.launch.slurm import slurm_restart_count
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)

RESUME_MODES = (None, "auto")


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
