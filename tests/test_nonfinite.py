"""Steps with a non-finite loss are skipped without touching the weights; too many in a row stop
training with a clear error."""

import copy

import lightning as L
import pytest
import torch

from encdec.callbacks.nonfinite import NonFiniteGuard, TrainingDiverged
from tests.conftest import TINY_MODELS, training_batches


class WeightsAcrossBatch(L.Callback):
    """The weights before and after training batch ``index``."""

    def __init__(self, index: int) -> None:
        self.index, self.before, self.after = index, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.index:
            self.before = copy.deepcopy(pl_module.state_dict())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.index:
            self.after = copy.deepcopy(pl_module.state_dict())


def fit(model, guard: NonFiniteGuard, nan_batches: set[int], steps: int, *callbacks) -> None:
    training_step = model.training_step

    def poisoned(batch, batch_idx):
        loss = training_step(batch, batch_idx)
        return loss * float("nan") if batch_idx in nan_batches else loss

    model.training_step = poisoned
    trainer = L.Trainer(
        max_steps=steps,
        callbacks=[guard, *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
    )
    loader = torch.utils.data.DataLoader(training_batches(steps), batch_size=None)
    trainer.fit(model, train_dataloaders=loader)


@pytest.mark.parametrize("name", ["transformer-prenorm", "bahdanau"])
def test_a_non_finite_step_is_skipped_and_leaves_the_weights(name):
    torch.manual_seed(0)
    model = TINY_MODELS[name]()
    guard, skipped, trained = (
        NonFiniteGuard(max_consecutive=3),
        WeightsAcrossBatch(1),
        WeightsAcrossBatch(2),
    )
    fit(model, guard, {1}, 4, skipped, trained)
    assert guard.skipped == 1 and guard.consecutive == 0
    for key, value in skipped.before.items():
        assert torch.equal(skipped.after[key], value), key  # weights and nothing else moved
    assert any(not torch.equal(trained.after[k], v) for k, v in trained.before.items())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_too_many_non_finite_steps_in_a_row_stop_training():
    torch.manual_seed(0)
    model = TINY_MODELS["rnn-gru"]()
    initial = copy.deepcopy(model.state_dict())
    with pytest.raises(TrainingDiverged, match="3 steps in a row had a non-finite loss"):
        fit(model, NonFiniteGuard(max_consecutive=3), {0, 1, 2, 3, 4}, 5)
    for key, value in initial.items():
        assert torch.equal(model.state_dict()[key], value), key
