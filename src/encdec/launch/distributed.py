"""DDP under Hydra: one run dir per job and the same config on every rank.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by running the command line again. In a Hydra
multirun that command line is the whole sweep (``-m ...``): every child would run all the jobs
itself, and under Optuna train other hyperparameters than rank 0. So:

- :func:`start_ranks_as_this_job` makes Lightning start each child as *this job*: the job's own
  overrides (the sweeper's choices included) in run mode, in the job's run dir.
- :func:`end_distributed_job` leaves the process group and clears the rendezvous variables
  after a job, so the next job of the sweep starts its own ranks.
- :class:`SameConfigOnAllRanks` stops a run whose ranks were started with different configs.
"""

import functools
import os
import sys
from collections.abc import Sequence

import lightning as L
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from encdec.utils.config import flatten
from encdec.utils.errors import UserError
from encdec.utils.lightning_compat import runs_in_spawned_processes, set_child_command

# Set by Lightning's launcher for the children and the main process of a job.
RENDEZVOUS_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def job_command(local_rank: int, entry_module: str) -> tuple[Sequence[str], str]:
    """The command and working dir that start rank ``local_rank`` of the current Hydra job of
    ``entry_module`` (named, not taken from ``__main__``: under submitit's local launcher the
    job runs inside submitit's own main module)."""
    hydra_config = HydraConfig.get()
    command = [sys.executable, "-m", entry_module]
    if hydra_config.mode == RunMode.MULTIRUN:
        command += ["--config-name", hydra_config.job.config_name]
        command += list(hydra_config.overrides.task)  # this job's values, not the sweep's lists
    else:
        command += sys.argv[1:]
    command += [
        f'hydra.run.dir="{hydra_config.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",  # rank 0 alone saves .hydra/
    ]
    return command, hydra_config.runtime.cwd


def start_ranks_as_this_job(entry_module: str) -> None:
    """Route Lightning's child-process command through :func:`job_command`."""
    set_child_command(functools.partial(job_command, entry_module=entry_module))


def end_distributed_job() -> None:
    """Leave the process group and forget this job's ranks (call after each job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for name in RENDEZVOUS_VARIABLES:
        os.environ.pop(name, None)


def config_differences(mine: dict, theirs: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    mine, theirs = flatten(mine), flatten(theirs)
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


class SameConfigOnAllRanks(L.Callback):
    """Before fitting, every rank compares its resolved config with rank 0's."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size == 1 or not dist.is_initialized():
            return
        configs: list[dict | None] = [None] * trainer.world_size
        dist.all_gather_object(configs, self.config)
        for rank, config in enumerate(configs[1:], start=1):
            if differences := config_differences(configs[0], config):
                raise UserError(
                    f"DDP rank {rank} was started with another config than rank 0 "
                    f"(differs at {', '.join(differences[:5])})"
                )


class SpawnedRanksLeaveTogether(L.Callback):
    """A ``ddp_spawn`` worker exits right after its stage: all ranks leave the process group
    together, since gloo aborts a process that exits while a peer still holds the group
    open."""

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if runs_in_spawned_processes(trainer) and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
