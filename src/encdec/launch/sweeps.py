"""Optuna studies that resume, for the Hydra sweeper behind ``hparams_search=<family>``
(``hydra_plugins.encdec_sweepers``) and for :mod:`encdec.tune`.

``n_trials`` is the study's total: started again on the same storage and study name, a study
runs only the trials it still lacks, and a trial that was running when the study was
interrupted is marked failed. Search spaces use Hydra's sweep grammar (:func:`distribution`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import DictConfig
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from encdec.utils.errors import UserError

if TYPE_CHECKING:
    from hydra_plugins.encdec_sweepers.resumable_optuna_sweeper import (
        OptunaSweeperConf,
        ResumableOptunaSweeper,
    )

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def distribution(override: Override) -> BaseDistribution | str:
    """The Optuna distribution of one override in Hydra's sweep grammar, or its value if it is
    fixed: ``choice(a, b)`` is categorical, ``range(start, stop[, step])`` steps through the
    values the basic sweeper would take (``stop`` excluded), ``interval(low, high)`` is a float
    between the two, and ``tag(log, ...)`` samples a range or interval on a log scale."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if not isinstance(value, ChoiceSweep | RangeSweep | IntervalSweep):
        raise ValueError("only choice(), range() and interval() can be searched")
    tags = set(value.tags)
    if tags - {"log"} or (tags and isinstance(value, ChoiceSweep)):
        raise ValueError("tag(log, ...) is the one tag, of range() and interval()")
    log_scale = "log" in tags
    if isinstance(value, ChoiceSweep):
        # Numbers stay numbers for the sampler; the rest as a job's override spells them.
        return CategoricalDistribution(
            [
                x if isinstance(x, int | float) else Transformer.str(x)
                for x in override.sweep_iterator()
            ]
        )
    if isinstance(value, IntervalSweep):
        return FloatDistribution(value.start, value.end, log=log_scale)
    points = value.range()  # a Python range (ints) or Hydra's FloatRange
    count = len(points) if isinstance(points, range) else sum(1 for _ in points)
    if not count:
        raise ValueError("the range is empty")
    # The last value in decimal: a float range's sums carry rounding errors, which Optuna would
    # take for a range that its step does not divide.
    first = Decimal(str(value.start))
    low, high = sorted((first, first + Decimal(str(value.step)) * (count - 1)))
    step = abs(value.step)
    if isinstance(value.start, int) and isinstance(step, int):
        return IntDistribution(int(low), int(high), log=log_scale, step=step)
    return FloatDistribution(float(low), float(high), log=log_scale, step=step)


def search_space(params: dict[str, str], where: str = "hydra.sweeper.params.") -> dict[str, Any]:
    """Optuna distributions (or fixed values) of ``key: value`` overrides; a bad one stops the
    run with one line naming ``where`` and the key."""
    parser = OverridesParser.create()
    space = {}
    for key, value in params.items():
        try:
            space[key] = distribution(parser.parse_override(f"{key}={value}"))
        except (HydraException, ValueError) as error:  # the grammar's, ours and Optuna's
            message = str(error).strip().splitlines()[0]
            raise UserError(
                f"{where}{key}: '{value}' is not an Optuna search space "
                f"(choice(...), range(...), interval(...), tag(log, interval(...))): {message}"
            ) from None
    return space


def command_line(arguments: Sequence[str]) -> dict[str, str]:
    """A sweep's command-line overrides as ``key: value``, the form of
    ``hydra.sweeper.params``, whose keys they override."""
    return {
        o.get_key_element(): o.get_value_string()
        if o.is_sweep_override()
        else o.get_value_element_as_str()
        for o in OverridesParser.create().parse_overrides(list(arguments))
    }


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
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        log.warning("trial %d was interrupted: marked failed", trial.number)
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def resumed_sampler(sampler_config: DictConfig, finished: int) -> Any:
    """The study's sampler. Its seed moves on by the number of trials already finished, so a
    resumed study does not sample again the points it started with."""
    seed = sampler_config.get("seed")
    shift = {"seed": seed + finished} if seed is not None and finished else {}
    return hydra.utils.instantiate(sampler_config, **shift)


def open_study(
    settings: OptunaSweeperConf | DictConfig, pruner: optuna.pruners.BasePruner | None = None
) -> tuple[optuna.Study, int]:
    """The study of ``hydra.sweeper``, created or resumed, and its number of finished trials."""
    if settings.direction not in ("maximize", "minimize"):
        raise UserError(f"hydra.sweeper.direction: '{settings.direction}' is not maximize|minimize")
    make_storage_dir(settings.storage)
    finished = 0
    if settings.storage and settings.study_name:
        finished = resume_study(settings.storage, settings.study_name)
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=settings.storage,
        sampler=resumed_sampler(settings.sampler, finished),
        pruner=pruner,
        direction=settings.direction,
        load_if_exists=True,
    )
    return study, finished


def summary(study: optuna.Study, metric: str = "value") -> list[str]:
    """The study's trials by state, and its best trial."""
    states = [t.state.name.lower() for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    lines = [f"study {study.study_name}: {counts}"]
    if "complete" in states:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, {metric}={best.value:.4g}, {best.params}")
    return lines


def tell(study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> str | None:
    """Tell the study how a trial's job ended: why the trial failed, or None."""
    try:
        value = job.return_value  # raises the job's own error if it failed
        if not isinstance(value, int | float):
            raise TypeError(f"the task returned {value!r}, not a number")
    except Exception as error:  # anything the task raised
        study.tell(trial, state=TrialState.FAIL)
        return f"trial {trial.number}: {type(error).__name__}: {error}"
    if study.tell(trial, value).state == TrialState.FAIL:  # Optuna fails a NaN
        return f"trial {trial.number}: the task returned {value}"
    return None


def any_value(distribution: BaseDistribution) -> Any:
    """A value of the distribution, to check that the trials' configs compose."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[0]
    return distribution.low


def sweep(sweeper: ResumableOptunaSweeper, arguments: Sequence[str]) -> None:
    """Run the trials the study lacks, ``n_jobs`` at a time through Hydra's launcher. The
    search space is ``hydra.sweeper.params`` with the command line's overrides on top; fixed
    values go to every trial as they are."""
    settings = sweeper.settings
    if settings.n_jobs < 1:
        raise UserError(f"hydra.sweeper.n_jobs: {settings.n_jobs} is not a positive number")
    space = search_space(dict(settings.params)) | search_space(command_line(arguments), where="")
    distributions = {k: v for k, v in space.items() if isinstance(v, BaseDistribution)}
    fixed = [f"{k}={v}" for k, v in space.items() if k not in distributions]
    # A misspelt key stops here, before the study has a trial that could not run.
    sweeper.validate_batch_is_legal(
        [fixed + [f"{k}={any_value(d)}" for k, d in distributions.items()]]
    )
    study, finished = open_study(settings)
    log.info("study %s: %d of %d trials done", study.study_name, finished, settings.n_trials)
    to_run, job_idx = settings.n_trials - finished, 0
    while to_run > 0:
        trials = [study.ask(distributions) for _ in range(min(settings.n_jobs, to_run))]
        batch = [fixed + [f"{k}={v}" for k, v in t.params.items()] for t in trials]
        for i, trial in enumerate(trials):
            log.info("trial %d is job #%d", trial.number, job_idx + i)
        jobs = sweeper.launcher.launch(batch, initial_job_idx=job_idx)
        job_idx += len(jobs)
        failures = []
        for trial, job in zip(trials, jobs, strict=True):
            if failure := tell(study, trial, job):
                log.warning("%s", failure)
                failures.append(failure)
        if len(failures) > settings.max_failure_rate * len(jobs):
            raise UserError(
                f"{len(failures)} of {len(jobs)} trials failed, more than "
                f"hydra.sweeper.max_failure_rate={settings.max_failure_rate}: {failures[0]}"
            )
        to_run -= len(trials)
    for line in summary(study, sweeper.config.get("optimized_metric", "value")):
        log.info("%s", line)
