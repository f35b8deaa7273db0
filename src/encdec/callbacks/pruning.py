"""Optuna pruning: stop a trial whose validation curve falls behind the study's."""

import lightning as L
import optuna


class OptunaPruning(L.Callback):
    """After each validation, report ``monitor`` to ``trial`` (step = the validation's number)
    and raise :class:`optuna.TrialPruned` when the study's pruner says to stop."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.validations = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.trial.report(value, self.validations)
        self.validations += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"trial {self.trial.number} pruned after {self.validations} validations "
                f"({self.monitor}={value:.4g})"
            )
