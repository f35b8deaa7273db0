"""Decoder-only models (prefix LM, causal LM): the source a prefix of the one stack, seen
bidirectionally or causally; target positions continuing from each row's own source length;
a batch learned by heart through the same loss and search as every model."""

import pytest
import torch

from encdec.decoding.search import greedy_search, max_output_lengths
from encdec.modules.decoder_only import target_mask
from tests.conftest import TINY_MODELS, learn_by_heart, random_batch, target_batch


def prefix_keys(name: str, src: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The second layer's keys over the source prefix: (B, H, S, D/H)."""
    torch.manual_seed(0)
    network = TINY_MODELS[name]().net.eval()
    with torch.no_grad():
        return network.encode(src, mask).prefix_kv[1][0]


@pytest.mark.parametrize(
    ("name", "sees_later_source"),
    [("transformer-prefix-lm", True), ("transformer-causal-lm", False)],
)
def test_the_prefix_sees_all_of_itself_only_in_the_prefix_lm(name, sees_later_source):
    src, mask = random_batch(batch=2, src_len=6)
    changed = src.clone()
    changed[0, 4] = 4 + (src[0, 4] - 3) % 20  # another token at the first row's 5th position
    before, after = prefix_keys(name, src, mask), prefix_keys(name, changed, mask)
    torch.testing.assert_close(before[1], after[1])  # the other row: untouched
    for later in (4, 5):  # the changed position and the one after it: changed in both
        assert not torch.allclose(before[0, :, later], after[0, :, later])
    earlier_changed = not torch.allclose(before[0, :, :4], after[0, :, :4])
    assert earlier_changed == sees_later_source


def test_target_positions_see_the_real_prefix_and_no_later_target():
    prefix_mask = torch.tensor([[True, True, False], [True, True, True]])
    mask = target_mask(prefix_mask, decoded=1, length=2)  # (B, 1, 2, 3 + 1 + 2)
    expected_row0 = torch.tensor(
        [[True, True, False, True, True, False], [True, True, False, True, True, True]]
    )
    assert mask.shape == (2, 1, 2, 6)
    assert torch.equal(mask[0, 0], expected_row0)
    assert torch.equal(mask[1, 0, :, :3], torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("name", ["transformer-prefix-lm", "transformer-causal-lm"])
def test_a_decoder_only_model_learns_a_batch_by_heart(name):
    torch.manual_seed(0)
    model = TINY_MODELS[name]()
    src, mask = random_batch(batch=4, src_len=7, seed=2)
    targets = torch.randint(4, 24, (4, 5), generator=torch.Generator().manual_seed(3))
    learn_by_heart(model, target_batch(src, mask, targets.tolist()), steps=150)
    with torch.no_grad():
        decoded = greedy_search(model.net, src, mask, max_output_lengths(mask, 0.0, 8, cap=100))
    assert [h.tokens for h in decoded] == targets.tolist()


def test_source_and_target_longer_than_the_position_table_is_a_clear_error():
    torch.manual_seed(0)
    network = TINY_MODELS["transformer-causal-lm"]().net.eval()  # learned positions: 1024
    src = torch.full((1, 1020), 5)
    memory = network.encode(src, torch.ones_like(src, dtype=torch.bool))
    with pytest.raises(ValueError, match="exceeds max_len 1024"):
        network.decoder(torch.full((1, 8), 5), memory)
