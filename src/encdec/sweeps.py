"""Optuna studies that resume, for the Hydra sweeper behind ``hparams_search=<family>``
(``hydra_plugins.encdec_sweepers``) and for :mod:`encdec.tune`.

hydra-optuna-sweeper runs ``n_trials`` new trials on every start. Here ``n_trials`` is the
study's total: started again on the same storage and study name, a study runs only the trials
it still lacks, and a trial that was running when the study was interrupted is marked failed.
"""

import logging
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
from omegaconf import DictConfig

from encdec.utils.errors import UserError

log = logging.getLogger(__name__)

FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)


def search_space(params: dict[str, str]) -> dict[str, Any]:
    """Optuna distributions (or fixed values) from ``hydra.sweeper.params``, one line per
    error naming the key."""
    parser = OverridesParser.create()
    space = {}
    for key, value in params.items():
        try:
            override = parser.parse_override(f"{key}={value}")
            space[key] = create_optuna_distribution_from_override(override)
        except Exception as error:  # the grammar's and the plugin's errors alike
            message = str(error).strip().splitlines()[0]
            raise UserError(
                f"hydra.sweeper.params.{key}: '{value}' is not an Optuna search space "
                f"(choice(...), range(...), interval(...), tag(log, interval(...))): {message}"
            ) from None
    return space


def make_storage_dir(storage: str | None) -> None:
    """SQLite creates the database file, not its directory."""
    if storage and storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def resume_study(storage: str, study_name: str) -> int:
    """Mark the trials an interrupted run left RUNNING as failed; the number of finished
    trials."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d was interrupted: marked failed", trial.number)
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def resumed_sampler(sampler_config: DictConfig, finished: int) -> Any:
    """The study's sampler. Its seed moves on by the number of trials already finished, so a
    resumed study does not sample again the points it started with."""
    seed = sampler_config.get("seed")
    shift = {"seed": seed + finished} if seed is not None and finished else {}
    return hydra.utils.instantiate(sampler_config, **shift)


def prepare_study(sweeper_impl: Any) -> bool:
    """Check the search space, create the SQLite dir, resume the study: whether trials remain
    (``sweeper_impl.n_trials`` becomes the number still to run)."""
    impl = sweeper_impl
    search_space(dict(impl.params or {}))  # bad distributions fail here, in one line
    storage, name = impl.storage, impl.study_name
    make_storage_dir(storage)
    if storage and name:
        done = resume_study(storage, name)
        if done:
            log.info("study %s: %d of %d trials done", name, done, impl.n_trials)
            impl.sampler = resumed_sampler(impl.config.hydra.sweeper.sampler, done)
        impl.n_trials = max(impl.n_trials - done, 0)
    return impl.n_trials > 0
