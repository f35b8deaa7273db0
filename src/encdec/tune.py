"""Optuna search with pruning: ``python -m encdec.tune hparams_search=<family> [key=value ...]``.

The Hydra Optuna sweeper (``encdec.train -m hparams_search=...``) cannot stop a bad trial
early. This entry point runs the same study (the search space in ``hydra.sweeper.params``, its
storage, study name, sampler and ``n_trials``) in this process, one trial after another, and
reports the monitored val metric after each validation so that the study's ``pruner`` stops
trials that fall behind. Trials run in ``<run dir>/trial_<number>``; an interrupted study
resumes where it stopped, as under the sweeper. DDP trials need the sweeper.
"""

import logging
import math
from pathlib import Path

import hydra
import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from encdec.callbacks.pruning import OptunaPruning
from encdec.launch.sweeps import open_study, search_space, summary
from encdec.train import train
from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import UserError, exit_on_user_error
from encdec.utils.loggers import finishing_wandb_run

log = logging.getLogger(__name__)


def trial_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """The training config of one trial, with its own run dir."""
    cfg = hydra.compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def run_trial(study: optuna.Study, space: dict, cfg: DictConfig, task_overrides: list[str]) -> None:
    """Sample, train and report one trial (pruned trials end early)."""
    distributions = {
        k: v for k, v in space.items() if isinstance(v, optuna.distributions.BaseDistribution)
    }
    trial = study.ask(fixed_distributions=distributions)
    fixed = [f"{k}={v}" for k, v in space.items() if k not in distributions]
    sampled = [f"{k}={v}" for k, v in trial.params.items()]
    output_dir = Path(cfg.paths.output_dir) / f"trial_{trial.number}"
    log.info("trial %d: %s", trial.number, " ".join(sampled))
    trial_cfg = trial_config([*task_overrides, *fixed, *sampled], output_dir)
    try:
        with finishing_wandb_run():  # each trial its own W&B run
            pruning = OptunaPruning(trial, trial_cfg.monitor)
            metrics = train(trial_cfg, extra_callbacks=[pruning])
    except optuna.TrialPruned as pruned:
        log.info("%s", pruned)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    value = metrics.get(cfg.optimized_metric, math.nan)
    if math.isnan(value):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise UserError(
            f"optimized_metric '{cfg.optimized_metric}' was not logged by trial {trial.number}"
        )
    study.tell(trial, value)


def tune(cfg: DictConfig) -> optuna.Study:
    hydra_config = HydraConfig.get()
    if "pruner" not in cfg or hydra_config.runtime.choices.get("hydra/sweeper") != "optuna":
        raise UserError(
            "encdec.tune needs a search: hparams_search=rnn|attention|transformer|optuna"
        )
    if cfg.trainer.devices not in (1, "1", "auto") or cfg.trainer.get("num_nodes", 1) != 1:
        raise UserError(
            "encdec.tune trains in this process: trainer.devices=1 (DDP trials: encdec.train -m)"
        )
    sweeper = hydra_config.sweeper
    space = search_space(dict(sweeper.params))
    study, finished = open_study(sweeper, hydra.utils.instantiate(cfg.pruner))
    task_overrides = list(hydra_config.overrides.task)
    for _ in range(max(sweeper.n_trials - finished, 0)):
        run_trial(study, space, cfg, task_overrides)
    print("\n".join(summary(study, cfg.optimized_metric)))
    return study


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    torch.set_float32_matmul_precision("high")
    tune(cfg)


if __name__ == "__main__":
    main()
