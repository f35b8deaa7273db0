"""Training FLOPs are counted per batch, forward and backward, and a FLOP budget stops a fit."""

import json

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from encdec.callbacks.training_flops import TrainingFlops
from encdec.utils.errors import UserError

STEP_FLOPS = 2 * (2 * 16 * 8 * 4)  # x W^T forward, and W's gradient backward: 2 per multiply-add


class OneLinearLayer(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 4, bias=False)

    def training_step(self, batch, batch_idx):
        (inputs,) = batch
        return self.layer(inputs).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, callback: TrainingFlops, max_steps: int) -> L.Trainer:
    data = DataLoader(TensorDataset(torch.randn(160, 8)), batch_size=16)
    trainer = L.Trainer(
        max_steps=max_steps, callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(OneLinearLayer(), data)
    return trainer


def test_every_batch_is_counted_forward_and_backward(tmp_path):
    callback = TrainingFlops()
    trainer = fit(tmp_path, callback, max_steps=5)
    assert callback.total == 5 * STEP_FLOPS
    assert trainer.callback_metrics["train/flops"] == 5 * STEP_FLOPS
    record = json.loads((tmp_path / "train_flops.json").read_text())
    assert record == {"train_flops": 5 * STEP_FLOPS, "max_flops": None}


def test_a_flop_budget_ends_the_fit_at_the_batch_that_reaches_it(tmp_path):
    callback = TrainingFlops(max_flops=2.5 * STEP_FLOPS)
    trainer = fit(tmp_path, callback, max_steps=10)
    assert trainer.global_step == 3 and callback.total == 3 * STEP_FLOPS


def test_the_count_survives_a_resume_and_a_bad_budget_is_refused():
    callback = TrainingFlops()
    callback.load_state_dict({"total": 1234})
    assert callback.state_dict() == {"total": 1234}
    with pytest.raises(UserError, match="max_flops must be positive"):
        TrainingFlops(max_flops=0)
