"""The Optuna sweeper of ``hparams_search=...``: hydra-optuna-sweeper's, made resumable.

Hydra loads sweepers from the ``hydra_plugins`` package only, and imports every module in it
at start-up, so the work is in :mod:`encdec.sweeps`, imported when a sweep starts.
"""

import logging
import warnings

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

from encdec.utils.errors import exit_on_user_error

log = logging.getLogger(__name__)
# The plugin builds Optuna 2's distribution classes, which Optuna 4 still accepts but warns about.
warnings.filterwarnings(
    "ignore", category=FutureWarning, module="hydra_plugins.hydra_optuna_sweeper"
)


class ResumableOptunaSweeper(OptunaSweeper):
    """``n_trials`` is the study's total: started again on the same storage and study name,
    the sweep runs only the trials the study still lacks."""

    @exit_on_user_error
    def sweep(self, arguments: list[str]) -> None:
        from encdec.sweeps import prepare_study

        if not prepare_study(self.sweeper):
            log.info("study %s is complete", self.sweeper.study_name)
            return
        super().sweep(arguments)
