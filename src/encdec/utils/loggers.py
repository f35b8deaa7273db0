"""What every logger gets at the start of a run (the resolved config, secrets redacted, and the
model's parameter counts), finding the W&B logger among a trainer's loggers, ending the W&B
run with the job, and a CSV logger that continues its file across processes."""

import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import Logger, csv_logs
from lightning.pytorch.loggers.wandb import WandbLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from encdec.utils.secrets import redact


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``total`` and ``trainable`` parameters (a shared tensor counted once), and the total of
    each top-level submodule (a network's ``encoder``, ``decoder``, ``generator``...;
    a tensor shared by two submodules, such as tied embeddings, counts in both)."""
    parameters = list(model.parameters())  # each shared tensor once
    counts = {
        "total": sum(p.numel() for p in parameters),
        "trainable": sum(p.numel() for p in parameters if p.requires_grad),
    }
    for name, child in model.named_children():
        size = sum(p.numel() for p in child.parameters())
        if size:
            counts[name] = size
    return counts


def log_run_config(loggers: list[Logger], cfg: DictConfig, model: nn.Module) -> dict[str, Any]:
    """Log the resolved config, secrets redacted, with ``parameters`` (``parameter_counts``) as
    hyperparameters to every logger; returns what was logged."""
    config = OmegaConf.to_container(cfg, resolve=True)
    hyperparameters = redact({**config, "parameters": parameter_counts(model)})
    for logger in loggers:
        logger.log_hyperparams(hyperparameters)
    return hyperparameters


def find_wandb_logger(loggers: list[Logger]) -> WandbLogger | None:
    """The trainer's W&B logger, if it has one."""
    return next((logger for logger in loggers if isinstance(logger, WandbLogger)), None)


@contextmanager
def finishing_wandb_run() -> Iterator[None]:
    """Finish this process's W&B run, if the block started one, when the block ends (failed if
    it raises): the next job of a multirun, in the same process, then gets a run of its own
    instead of logging into this one."""
    try:
        yield
    except BaseException:
        _finish_wandb_run(exit_code=1)
        raise
    _finish_wandb_run(exit_code=0)


def _finish_wandb_run(exit_code: int) -> None:
    wandb = sys.modules.get("wandb")  # not imported: no run to finish
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


class ContinuingExperimentWriter(csv_logs.ExperimentWriter):
    """Lightning's ``metrics.csv`` writer, with the file itself the record of its columns.

    Lightning's writer keeps the columns it has written in memory only, and when new keys
    arrive it rewrites the file under a header of just those columns. A writer in another
    process than the one that wrote the file knows none of them: under ``ddp_spawn`` every
    stage (fit, validate, test) runs in newly spawned processes, each with a copy of the main
    process's logger that never saw the previous stage's keys, and ``resume=auto`` starts a new
    process. Its rewrite then fails on the rows already there ("dict contains fields not in
    fieldnames: 'val/...'") after truncating the file to the new header. So before each save the
    columns already in the file join the known ones (rewriting the file if its header differs),
    and rows are always appended under the file's full header.
    """

    def save(self) -> None:
        header = self._file_header()
        if self.metrics and header:
            self.metrics_keys = sorted(set(self.metrics_keys) | set(header))
            if header != self.metrics_keys:
                self._rewrite_with_new_header(self.metrics_keys)
        super().save()

    def _file_header(self) -> list[str]:
        """The column names of ``metrics.csv``; none before it is written."""
        if not self._fs.isfile(self.metrics_file_path):
            return []
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            return next(csv.reader(file), [])


class CSVLogger(csv_logs.CSVLogger):
    """Lightning's CSV logger with :class:`ContinuingExperimentWriter`: every stage and every
    process of a run appends to the one ``metrics.csv``."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ContinuingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
