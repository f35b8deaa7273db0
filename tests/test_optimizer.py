"""The optimizer every family trains with: AdamW, fused where it can be, matrices decayed."""

import lightning as L
import pytest
import torch

from encdec.models.base import supports_fused_adamw
from encdec.models.transformer import TransformerSeq2Seq
from tests.conftest import TRAINING, VOCAB, training_batches


def fitted_optimizer(trainer_settings=None, **optimizer_settings) -> torch.optim.Optimizer:
    """The optimizer after two training steps of a tiny Transformer on CPU."""
    torch.manual_seed(0)
    settings = {**TRAINING, "optimizer": {**TRAINING["optimizer"], **optimizer_settings}}
    model = TransformerSeq2Seq(VOCAB, VOCAB, **settings, d_model=32, num_heads=4, ff_dim=64)
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **(trainer_settings or {}),
    )
    loader = torch.utils.data.DataLoader(training_batches(2), batch_size=None)
    trainer.fit(model, train_dataloaders=loader)
    return trainer.optimizers[0]


def test_adamw_is_fused_on_cpu_unless_foreach_is_asked():
    assert fitted_optimizer({"gradient_clip_val": 1.0}).defaults["fused"] is True
    unfused = fitted_optimizer(foreach=True).defaults
    assert unfused["foreach"] is True and not unfused["fused"]


def test_mixed_precision_with_gradient_clipping_trains_unfused():
    """Lightning's mixed precision refuses to clip a fused optimizer's gradients."""
    clipped = {"precision": "bf16-mixed", "gradient_clip_val": 1.0}
    assert not fitted_optimizer(clipped).defaults["fused"]
    assert fitted_optimizer({"precision": "bf16-mixed"}).defaults["fused"] is True


def test_fused_adamw_steps_like_the_default_one():
    weights = torch.randn(8, 4)
    results = []
    for settings in ({"fused": True}, {"foreach": False}):
        parameter = torch.nn.Parameter(weights.clone())
        optimizer = torch.optim.AdamW([parameter], lr=1e-2, weight_decay=0.1, **settings)
        for step in range(5):
            parameter.grad = torch.sin(weights * (step + 1))
            optimizer.step()
        results.append(parameter.detach())
    torch.testing.assert_close(results[0], results[1])


def test_only_matrices_are_weight_decayed():
    groups = fitted_optimizer(weight_decay=0.1).param_groups
    decays = {group["weight_decay"]: group["params"] for group in groups}
    assert set(decays) == {0.1, 0.0}
    assert all(p.dim() >= 2 for p in decays[0.1]) and all(p.dim() < 2 for p in decays[0.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_adamw_is_used_only_for_floating_point_cpu_and_cuda(dtype):
    assert supports_fused_adamw([torch.nn.Parameter(torch.zeros(2, dtype=dtype))])
    assert not supports_fused_adamw([torch.nn.Parameter(torch.zeros(2, device="meta"))])
