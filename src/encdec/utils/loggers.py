"""What every logger gets at the start of a run (the resolved config, secrets redacted, and the
model's parameter counts), finding the W&B logger among a trainer's loggers, and ending the W&B
run with the job."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers.wandb import WandbLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from encdec.utils.secrets import redact


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``total`` and ``trainable`` parameters (a shared tensor counted once), and the total of
    each top-level submodule (``encoder``, ``decoder``, ``generator``, ``image_encoder``...;
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
