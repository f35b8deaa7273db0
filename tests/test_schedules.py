"""Learning-rate schedules: shapes, state that survives a resume, and time-only budgets."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from encdec.train import train
from encdec.training.schedules import ConstantSchedule, CosineSchedule, check_step_budget
from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import UserError
from tests.conftest import FAST, RNN_SIZES, build_tiny, compose_config

NO_STEP_BUDGET = "model.scheduler=CosineSchedule needs a step budget: set trainer.max_steps or"
TIME_ONLY = ["trainer.max_epochs=-1", "trainer.max_steps=-1", "trainer.max_time=00:00:00:05"]


def build_scheduler(optimizer, name: str, total_steps: float, **settings):
    """The schedule ``conf/model/scheduler/<name>.yaml`` configures, with ``settings``
    overriding its values, for ``optimizer`` (and ``total_steps`` where it takes them)."""
    config = OmegaConf.load(Path(CONFIG_DIR) / "model" / "scheduler" / f"{name}.yaml")
    factory = hydra.utils.instantiate(OmegaConf.merge(config, settings))
    if "total_steps" in factory.func.__init__.__code__.co_varnames:
        return factory(optimizer, total_steps=total_steps)
    return factory(optimizer)


def _rates(name: str, steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if name == "noam":
        kwargs.setdefault("d_model", 256)
    scheduler = build_scheduler(optimizer, name, total_steps=steps, **kwargs)
    rates = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def test_inverse_sqrt_warms_up_then_decays():
    rates = _rates("inverse_sqrt", 400, warmup_steps=100)
    assert rates[49] == pytest.approx(0.5)
    assert rates[99] == pytest.approx(1.0)
    assert rates[399] == pytest.approx(math.sqrt(100 / 400))


def test_noam_peaks_at_warmup():
    rates = _rates("noam", 300, warmup_steps=100)
    assert max(range(300), key=lambda i: rates[i]) == 99
    assert rates[99] == pytest.approx(256**-0.5 * 100**-0.5)


def test_cosine_reaches_min_ratio():
    rates = _rates("cosine", 200, warmup_steps=20, min_ratio=0.1)
    assert rates[19] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[20:], rates[21:], strict=False))


def test_state_survives_resume():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, "inverse_sqrt", total_steps=0, warmup_steps=10)
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.AdamW([parameter], lr=1.0)
    resumed = build_scheduler(fresh_optimizer, "inverse_sqrt", total_steps=0, warmup_steps=10)
    resumed.load_state_dict(state)
    optimizer.step(), scheduler.step()
    fresh_optimizer.step(), resumed.step()
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_unknown_schedule(tmp_path):
    target = "model.scheduler._target_=encdec.training.schedules.LinearSchedule"
    cfg = compose_config("train", [*FAST, target], tmp_path)
    with pytest.raises(UserError, match="model.scheduler._target_: cannot import"):
        train(cfg)


def test_constant_schedule_warms_up_when_asked():
    assert _rates("constant", 4) == [1.0] * 4
    assert _rates("constant", 4, warmup_steps=2) == [0.5, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("name", ["inverse_sqrt", "noam", "constant"])
def test_schedules_without_a_total_build_for_endless_training(name):
    """Lightning's estimate of the steps is infinite under a time-only budget."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, name, total_steps=math.inf)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert 0 < optimizer.param_groups[0]["lr"] < math.inf


@pytest.mark.parametrize("total_steps", [math.inf, -1])  # -1: an endless loader, no max_steps
def test_cosine_without_a_total_is_a_user_error(total_steps):
    model = build_tiny([*RNN_SIZES, "model/scheduler=cosine"])
    model._trainer = SimpleNamespace(  # what configure_optimizers reads of the trainer
        estimated_stepping_batches=total_steps, precision="32-true", gradient_clip_val=None
    )
    with pytest.raises(UserError, match=NO_STEP_BUDGET):
        model.configure_optimizers()


@pytest.mark.parametrize(
    ("max_steps", "max_epochs", "max_time", "budget"),
    [
        (-1, -1, "00:08:00:00", False),
        (-1, -1, None, False),
        (-1, None, "00:08:00:00", False),  # Lightning: no epoch limit when max_time is set
        (-1, None, None, True),  # Lightning: 1000 epochs
        (100, -1, "00:08:00:00", True),
        (-1, 3, "00:08:00:00", True),
    ],
)
def test_step_budget_check_follows_lightnings_limits(max_steps, max_epochs, max_time, budget):
    check_step_budget(ConstantSchedule, max_steps, max_epochs, max_time)  # needs no budget
    if budget:
        check_step_budget(CosineSchedule, max_steps, max_epochs, max_time)
    else:
        with pytest.raises(UserError, match=NO_STEP_BUDGET):
            check_step_budget(CosineSchedule, max_steps, max_epochs, max_time)


def test_time_only_budget_trains_until_the_time_is_up_and_tests(tmp_path):
    """No step or epoch limit: only ``max_time`` ends training (inverse_sqrt, the default)."""
    cfg = compose_config("train", [*FAST, *TIME_ONLY, *RNN_SIZES], tmp_path / "run")
    metrics = train(cfg)
    assert "test/bleu" in metrics and "val/bleu" in metrics
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["sentences"] > 0


def test_cosine_under_a_time_only_budget_stops_before_training(tmp_path):
    cfg = compose_config("train", [*FAST, *TIME_ONLY, "model/scheduler=cosine"], tmp_path)
    with pytest.raises(UserError, match=NO_STEP_BUDGET):
        train(cfg)
    assert not (tmp_path / "tokenizer").exists()  # stopped before any data was read
