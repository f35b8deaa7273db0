"""The training throughput monitor counts every real target token of the batches it trained on."""

import json

import lightning as L
import torch

from encdec.callbacks.throughput import ThroughputMonitor
from encdec.data.tokenization import PAD_ID
from tests.conftest import TINY_MODELS, training_batches
from tests.token_counts import CountTargetTokens


def test_summary_counts_the_real_target_tokens_trained_on(tmp_path):
    torch.manual_seed(0)
    batches = training_batches(5)  # right-padded targets: padding is not counted
    monitor, counter = ThroughputMonitor(log_every_n_steps=2), CountTargetTokens()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=5,
        callbacks=[monitor, counter],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = TINY_MODELS["transformer-prenorm"]()
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    counted = json.loads((tmp_path / "target_tokens_rank0.json").read_text())
    real_tokens = sum(int((b["target_out"] != PAD_ID).sum()) for b in batches)
    assert summary["target_tokens"] == counted == real_tokens
    assert summary["world_size"] == 1
    assert 0 < summary["train_seconds"] <= summary["fit_wall_seconds"]
    assert summary["target_tokens_per_s"] == counted / summary["train_seconds"]
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
