"""Learning-rate schedules: shapes, and state that survives a resume."""

import math

import pytest
import torch

from encdec.schedules import build_scheduler


def _rates(name: str, steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, name, total_steps=steps, d_model=256, **kwargs)
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
    scheduler = build_scheduler(
        optimizer, "inverse_sqrt", total_steps=0, d_model=1, warmup_steps=10
    )
    for _ in range(25):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.AdamW([parameter], lr=1.0)
    resumed = build_scheduler(
        fresh_optimizer, "inverse_sqrt", total_steps=0, d_model=1, warmup_steps=10
    )
    resumed.load_state_dict(state)
    optimizer.step(), scheduler.step()
    fresh_optimizer.step(), resumed.step()
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_unknown_schedule():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="choose inverse_sqrt, noam, cosine or constant"):
        build_scheduler(optimizer, "linear", total_steps=1, d_model=1)
