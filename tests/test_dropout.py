"""The CPU dropout: the right drop rate, unbiased, gradients through kept elements only,
repeatable from the seed, and nn.Dropout's behaviour at the edges."""

import pytest
import torch
from torch import nn

from encdec.modules.dropout import LANE_VALUES, Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_drop_rate_and_scale(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    dropout = Dropout(p).train()
    keep = dropout.keep_threshold / LANE_VALUES
    assert abs(keep - (1 - p)) <= 0.5 / LANE_VALUES  # p rounded to a multiple of 1/32768
    y = dropout(x)
    dropped = (y == 0).float().mean().item()
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(dropped - p) < 5 * sigma
    kept = y[y != 0]
    assert torch.equal(kept, torch.full_like(kept, 1 / keep))
    assert abs(y.mean().item() - 1.0) < 5 * sigma / (1 - p)  # unbiased


def test_every_lane_of_a_random_word_is_used() -> None:
    """Each 64-bit word masks 4 neighbouring elements: each position in a group of 4 drops at
    the same rate (the word's top bit, always 0, must not bias the last lane)."""
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([4_000_000]), keep_threshold=16384)  # keep half
    per_lane = mask.view(-1, 4).float().mean(dim=0)
    assert torch.allclose(per_lane, torch.full((4,), 0.5), atol=0.002)
    assert keep_mask(torch.Size([1000]), keep_threshold=LANE_VALUES).all()  # keep everything
    assert not keep_mask(torch.Size([1000]), keep_threshold=0).any()
    # neighbouring lanes are independent: both kept a quarter of the time
    both = (mask.view(-1, 4)[:, 2] & mask.view(-1, 4)[:, 3]).float().mean().item()
    assert abs(both - 0.25) < 0.002


def test_gradient_flows_through_kept_elements_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 5, 16, requires_grad=True)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    kept = y != 0
    assert torch.equal(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))  # exact: 24576
    assert torch.count_nonzero(x.grad[~kept]) == 0


def test_bf16_input_stays_bf16_and_same_seed_same_mask() -> None:
    x = torch.randn(4, 7, 32, dtype=torch.bfloat16)
    dropout = Dropout(0.1).train()
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert first.dtype == torch.bfloat16
    assert torch.equal(first, dropout(x))
    assert not torch.equal(first, dropout(x))  # the generator moved on


def test_edges_match_nn_dropout() -> None:
    x = torch.randn(3, 4)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert Dropout(1e-6).train()(x) is x  # rounds to 0; was: every element dropped
    assert torch.equal(Dropout(1.0).train()(x), nn.Dropout(1.0).train()(x))  # all zeros
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            Dropout(p)
    assert repr(Dropout(0.2)) == "Dropout(p=0.2)"
