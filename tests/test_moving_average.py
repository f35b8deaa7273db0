"""callbacks=ema: the exponential moving average of the weights, against its formula, through
the CLI (validation, checkpoints and the test stage use it) and across an exact resume."""

import json

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from encdec.callbacks.moving_average import ExponentialMovingAverage
from encdec.evaluate import evaluate
from encdec.utils.errors import UserError
from tests.conftest import compose_config
from tests.test_resume import kill_at, last_step, outcome, train_cli


class WithCounter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


@pytest.mark.parametrize("warmup", [False, True])
def test_average_follows_its_formula(warmup):
    torch.manual_seed(0)
    model = WithCounter()
    callback = ExponentialMovingAverage(decay=0.9, warmup=warmup)
    average = AveragedModel(model, use_buffers=True, **callback._kwargs)
    expected = {name: p.detach().clone() for name, p in model.linear.named_parameters()}
    for update in range(5):
        with torch.no_grad():
            for p in model.linear.parameters():
                p.add_(torch.randn_like(p))
            model.count += 1
        average.update_parameters(model)
        decay = min(0.9, (1 + update) / (10 + update)) if warmup else 0.9  # update earlier ones
        for name, p in model.linear.named_parameters():  # the first update copies the weights
            expected[name] = (
                p.detach().clone()
                if update == 0
                else (decay * expected[name] + (1 - decay) * p.detach())
            )
    for name, p in average.module.linear.named_parameters():
        assert torch.allclose(p, expected[name], atol=1e-6), name
    assert int(average.module.count) == 5  # integer buffers are copied, not averaged
    assert callback.decay_after(0) == (0.1 if warmup else 0.9)
    assert callback.should_update(step_idx=0) and not callback.should_update(epoch_idx=0)
    assert not ExponentialMovingAverage(start_step=3).should_update(step_idx=2)
    with pytest.raises(UserError, match=r"callbacks\.ema\.decay must be in \[0, 1\)"):
        ExponentialMovingAverage(decay=1.0)


@pytest.mark.slow
def test_ema_is_what_is_checkpointed_tested_and_resumed_exactly(tmp_path):
    cache = tmp_path / "cache"
    ema = ["callbacks=ema", "callbacks.ema.decay=0.8"]
    assert train_cli(tmp_path / "whole", cache, *ema) == 0
    run = tmp_path / "killed"
    assert train_cli(run, cache, *ema, *kill_at(5)) == -9  # mid-epoch 0
    assert last_step(run) == 4
    assert train_cli(run, cache, *ema) == 0

    whole_last, whole_best, whole_metrics, whole_predictions = outcome(tmp_path / "whole")
    last, best, metrics, predictions = outcome(run)
    for expected, actual in ((whole_last, last), (whole_best, best)):
        assert expected.keys() == actual.keys()
        for name, tensor in expected.items():
            assert torch.equal(actual[name], tensor), name
    assert (metrics, predictions) == (whole_metrics, whole_predictions)

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    weights = checkpoint["current_model_state"]  # the raw weights, for resuming
    assert any(not torch.equal(weights[name], t) for name, t in checkpoint["state_dict"].items())
    # the test stage used the average that best.ckpt holds: evaluating it gives the same
    best_ckpt = run / "checkpoints" / "best.ckpt"
    one_batch = [f"ckpt_path={best_ckpt}", "trainer.limit_test_batches=1"]  # as trained
    evaluated = evaluate(compose_config("evaluate", one_batch, tmp_path / "e"))
    logged = json.loads((run / "test_metrics.json").read_text())["metrics"]
    for name, value in evaluated.items():
        assert value == pytest.approx(logged[name], abs=1e-6), name
