"""The optimizer a model config names (AdamW by default, fused where it can be; any torch.optim
optimizer), matrices decayed."""

import lightning as L
import pytest
import torch

from encdec.training.seq2seq_module import supports_fused
from tests.conftest import TINY_OVERRIDES, build_tiny, training_batches


def fitted_optimizer(trainer_settings=None, *overrides: str, **settings) -> torch.optim.Optimizer:
    """The optimizer after two training steps of a tiny Transformer on CPU; ``overrides`` of
    the model config, ``settings`` of its optimizer."""
    torch.manual_seed(0)
    optimizer = [f"+model.optimizer.{key}={value}" for key, value in settings.items()]
    model = build_tiny([*TINY_OVERRIDES["transformer-prenorm"], *overrides, *optimizer])
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
    unfused = fitted_optimizer(None, foreach=True).defaults
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
    groups = fitted_optimizer(None, "model.optimizer.weight_decay=0.1").param_groups
    decays = {group["weight_decay"]: group["params"] for group in groups}
    assert set(decays) == {0.1, 0.0}
    assert all(p.dim() >= 2 for p in decays[0.1]) and all(p.dim() < 2 for p in decays[0.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_adamw_is_used_only_for_floating_point_cpu_and_cuda(dtype):
    assert supports_fused([torch.nn.Parameter(torch.zeros(2, dtype=dtype))])
    assert not supports_fused([torch.nn.Parameter(torch.zeros(2, device="meta"))])


def test_any_torch_optimizer_by_its_config():
    """model/optimizer=sgd: SGD with its own settings, weight decay on matrices only."""
    sgd = fitted_optimizer(None, "model/optimizer=sgd", "model.optimizer.weight_decay=0.01")
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert {group["weight_decay"] for group in sgd.param_groups} == {0.01, 0.0}
