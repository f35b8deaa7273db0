"""Model internals: cached decoding, causal and padding masks, attention variants."""

import pytest
import torch

from encdec.modules.attention import (
    BahdanauAttention,
    LuongAttention,
    MultiHeadAttention,
    build_rnn_attention,
)
from encdec.modules.dropout import LANE_VALUES
from tests.conftest import TINY_MODELS, random_batch

TRANSFORMERS = [name for name in TINY_MODELS if name.startswith("transformer")]


def _step_logits(model, src, mask, tgt_in):
    """Logits for every position, one cached step at a time: (B, T, V)."""
    memory = model.encode(src, mask)
    state = model.init_state(memory)
    logits = []
    for t in range(tgt_in.size(1)):
        step_logits, state, _ = model.step(tgt_in[:, t], state, memory)
        logits.append(step_logits)
    return torch.stack(logits, dim=1)


def test_incremental_steps_equal_teacher_forcing(tiny_model):
    """Transformer: cached == uncached; RNNs: step loop == whole-sequence forward."""
    src, mask = random_batch()
    tgt_in = torch.randint(4, 24, (src.size(0), 6))
    tgt_in[:, 0] = 2
    full = tiny_model(src, mask, tgt_in)
    stepped = _step_logits(tiny_model, src, mask, tgt_in)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_no_future_position_leaks_through_decoder_mask(name):
    torch.manual_seed(0)
    model = TINY_MODELS[name]().eval()
    src, mask = random_batch()
    tgt_in = torch.randint(4, 24, (src.size(0), 8))
    changed = tgt_in.clone()
    changed[:, 5:] = torch.randint(4, 24, changed[:, 5:].shape)
    before, after = model(src, mask, tgt_in), model(src, mask, changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_padding_is_ignored(tiny_model):
    """Whatever sits in padded source positions, and however much padding, outputs stay equal."""
    src, mask = random_batch()
    tgt_in = torch.randint(4, 24, (src.size(0), 5))
    reference = tiny_model(src, mask, tgt_in)
    garbage = torch.where(mask, src, torch.randint(4, 24, src.shape))
    torch.testing.assert_close(tiny_model(garbage, mask, tgt_in), reference)
    wider = torch.nn.functional.pad(src, (0, 3))
    torch.testing.assert_close(
        tiny_model(wider, wider != 0, tgt_in), reference, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("kind", ["bahdanau", "dot", "general"])
def test_rnn_attention_weights_sum_to_one_and_skip_padding(kind):
    torch.manual_seed(0)
    attention = build_rnn_attention(kind, query_size=8, key_size=8)
    states = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    context, weights = attention(torch.randn(2, 3, 8), attention.project_keys(states), states, mask)
    assert context.shape == (2, 3, 8) and weights.shape == (2, 3, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    assert (weights[1, :, 2:] == 0).all()


def test_attention_builders_reject_unknown_kinds():
    assert isinstance(build_rnn_attention("bahdanau", 4, 6), BahdanauAttention)
    assert isinstance(build_rnn_attention("general", 4, 6), LuongAttention)
    with pytest.raises(ValueError, match="choose bahdanau, location, dot or general"):
        build_rnn_attention("cosine", 4, 4)
    with pytest.raises(ValueError, match="query_size == key_size"):
        build_rnn_attention("dot", 4, 6)


@pytest.mark.parametrize("is_causal", [False, True])
def test_cpu_training_attention_path_equals_sdpa(is_causal):
    """Training with attention dropout on CPU takes the explicit softmax path (with the cheap
    dropout); with a dropout that keeps everything it must equal SDPA's attention."""
    torch.manual_seed(0)
    attention = MultiHeadAttention(dim=16, num_heads=4, dropout=1e-9)  # keeps every weight
    assert attention.weights_dropout.keep_threshold == LANE_VALUES
    query, source = torch.randn(3, 6, 16), torch.randn(3, 6, 16)
    mask = None if is_causal else torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 6])
    mask = None if mask is None else mask[:, None, None, :]
    keys, values = attention.project_kv(source)
    explicit = attention.train()(query, keys, values, mask, is_causal)
    sdpa = attention.eval()(query, keys, values, mask, is_causal)  # T > 1: SDPA
    torch.testing.assert_close(explicit, sdpa)
