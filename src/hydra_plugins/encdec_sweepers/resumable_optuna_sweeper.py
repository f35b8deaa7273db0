"""The Optuna sweeper of ``hparams_search=...`` (``hydra/sweeper=optuna``), on Optuna 4+.

Each batch of ``n_jobs`` trials is asked from the study, run through Hydra's launcher and told
back; ``n_trials`` is the study's total, so the same command again resumes a study. Hydra loads
sweepers from the ``hydra_plugins`` package only, and imports every module in it at start-up
(which registers the config below), so the work is in :mod:`encdec.launch.sweeps`, imported when a
sweep starts.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from encdec.utils.errors import exit_on_user_error


@dataclass
class OptunaSweeperConf:
    """``hydra.sweeper`` under ``hydra/sweeper=optuna``: a structured config, so that a misspelt
    key stops the run before anything starts."""

    _target_: str = "hydra_plugins.encdec_sweepers.resumable_optuna_sweeper.ResumableOptunaSweeper"
    # The sampler stays a config until the sweep starts: a resumed study moves its seed on.
    _recursive_: bool = False
    study_name: str | None = None
    storage: str | None = None  # e.g. sqlite:///path/study.db; None keeps the study in memory
    direction: str = "maximize"  # or minimize
    n_trials: int = 20  # the study's total, finished trials of earlier runs included
    n_jobs: int = 1  # trials launched together, as one batch of the launcher
    max_failure_rate: float = 0.0  # of a batch's trials; more failed ones stop the sweep
    sampler: dict[str, Any] = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler"}
    )
    params: dict[str, str] = field(default_factory=dict)  # key: choice(...), interval(...), ...


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="encdec"
)


class ResumableOptunaSweeper(Sweeper):
    """Hydra's side of the sweep: its settings, launcher and config;
    :func:`encdec.launch.sweeps.sweep` runs the study."""

    def __init__(self, **settings: Any) -> None:
        self.settings = OptunaSweeperConf(**settings)  # the fields, checked by Hydra already

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    @exit_on_user_error
    def sweep(self, arguments: list[str]) -> None:
        from encdec.launch.sweeps import sweep

        sweep(self, arguments)
